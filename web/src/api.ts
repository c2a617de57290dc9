/**
 * The API as the page uses it: one gRPC-web transport to the fabd that served the page (no
 * other origin is ever contacted), clients generated from proto/, the bearer token of this tab's
 * session, and errors turned into the sentence the API gave.
 */
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AdminService } from "./gen/fabrouter/v1/admin_pb";
import { DesignService } from "./gen/fabrouter/v1/designs_pb";
import { EstimateService } from "./gen/fabrouter/v1/estimates_pb";
import { JobService } from "./gen/fabrouter/v1/jobs_pb";
import { NodeService } from "./gen/fabrouter/v1/network_pb";

const TOKEN_KEY = "fabrouter.token";

/** The token lives in sessionStorage: it is gone when the tab closes. */
export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const auth: Interceptor = (next) => async (req) => {
  const t = token();
  if (t) req.header.set("authorization", `Bearer ${t}`);
  return next(req);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  interceptors: [auth],
});

export const designs = createClient(DesignService, transport);
export const jobs = createClient(JobService, transport);
export const nodes = createClient(NodeService, transport);
export const estimates = createClient(EstimateService, transport);
export const admin = createClient(AdminService, transport);

/** What to tell a person: the server's own sentence, never a bare code. */
export function sentence(e: unknown): string {
  if (e instanceof ConnectError) {
    if (e.code === Code.Unavailable && !e.rawMessage) {
      return "The router cannot be reached; check the connection and try again.";
    }
    return e.rawMessage || `The request failed (${Code[e.code]}).`;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

/** Whether a failed call may succeed if simply tried again (the connection dropped). */
export function transient(e: unknown): boolean {
  return (
    e instanceof ConnectError &&
    (e.code === Code.Unavailable || e.code === Code.Unknown || e.code === Code.DeadlineExceeded)
  );
}
