#!/usr/bin/env python3
"""Writes the demo's example models as binary STL (run from this directory).

They are made here, from simple geometry, so the project owns them outright:
- cube-20mm.stl: a 20 mm calibration cube (PLA; any printer can take it),
- ring-40mm.stl: a ring, 40 mm across, 10 mm tall (the demo asks for PETG),
- plate-340mm.stl: a 340 x 120 x 2 mm plate (only a large bed fits it).
"""
import math
import struct


def box(x0, y0, z0, x1, y1, z1):
    v = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0),
         (x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]
    faces = [(0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
             (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7)]
    return [(v[a], v[b], v[c]) for a, b, c in faces]


def ring(outer_r, inner_r, height, segments):
    tris = []
    for i in range(segments):
        a0 = 2 * math.pi * i / segments
        a1 = 2 * math.pi * ((i + 1) % segments) / segments  # the last segment closes on the first
        o0 = (outer_r * math.cos(a0), outer_r * math.sin(a0))
        o1 = (outer_r * math.cos(a1), outer_r * math.sin(a1))
        i0 = (inner_r * math.cos(a0), inner_r * math.sin(a0))
        i1 = (inner_r * math.cos(a1), inner_r * math.sin(a1))
        lo = lambda p: (p[0], p[1], 0.0)
        hi = lambda p: (p[0], p[1], height)
        # Outer wall faces out, inner wall faces the hole, top up, bottom down.
        tris += [(lo(o0), lo(o1), hi(o1)), (lo(o0), hi(o1), hi(o0))]
        tris += [(lo(i1), lo(i0), hi(i0)), (lo(i1), hi(i0), hi(i1))]
        tris += [(hi(o0), hi(o1), hi(i1)), (hi(o0), hi(i1), hi(i0))]
        tris += [(lo(o1), lo(o0), lo(i0)), (lo(o1), lo(i0), lo(i1))]
    return tris


def normal(t):
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = t
    ux, uy, uz = bx - ax, by - ay, bz - az
    vx, vy, vz = cx - ax, cy - ay, cz - az
    n = (uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx)
    length = math.sqrt(sum(c * c for c in n)) or 1.0
    return tuple(c / length for c in n)


def write(path, tris):
    with open(path, "wb") as fh:
        fh.write(b"fabrouter example model".ljust(80, b" "))
        fh.write(struct.pack("<I", len(tris)))
        for t in tris:
            fh.write(struct.pack("<3f", *normal(t)))
            for p in t:
                fh.write(struct.pack("<3f", *p))
            fh.write(b"\0\0")


write("cube-20mm.stl", box(0, 0, 0, 20, 20, 20))
write("ring-40mm.stl", ring(20.0, 15.0, 10.0, 96))
write("plate-340mm.stl", box(0, 0, 0, 340, 120, 2))
