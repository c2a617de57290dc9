#!/usr/bin/env bash
# Generates the Python API (fabrouter/v1/*_pb2.py and *_pb2_grpc.py) from ../../proto into gen/
# (git-ignored). client.py does the same by itself when gen/ is missing or older than the protos.
# Needs grpcio-tools: python3 -m pip install -r requirements.txt
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
# grpc_tools ships the well-known types (google/protobuf/timestamp.proto, ...) in its _proto dir.
well_known="$(python3 -c 'from importlib.resources import files; print(files("grpc_tools") / "_proto")')"
mkdir -p "$here/gen"
cd "$proto"
python3 -m grpc_tools.protoc -I. -I"$well_known" \
  --python_out="$here/gen" --grpc_python_out="$here/gen" fabrouter/v1/*.proto
echo "generated $(ls "$here"/gen/fabrouter/v1/*.py | wc -l) modules in $here/gen/fabrouter/v1"
