// The route table and dispatch: a route is a fixed path pattern (":name"
// segments are parameters) with one handler per method. Dispatch
// authenticates /api/v1 before it looks at routes, then answers 404 for an
// unknown path and 405 (with Allow) for a known path and another method.
// HEAD is served by the GET handler.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { BearerAuth } from "./auth.ts";
import { ApiError, parsePath } from "./http.ts";

export type Ctx = {
  req: IncomingMessage;
  res: ServerResponse;
  /** Decoded path parameters (":id"). */
  params: Record<string, string>;
};
export type Handler = (ctx: Ctx) => Promise<void> | void;
export interface Route {
  pattern: string[];
  methods: Record<string, Handler>;
}
/** Serves one request for `path` (the request target without its query). */
export type Dispatch = (req: IncomingMessage, res: ServerResponse, path: string) => Promise<void>;

const unauthorized = () => new ApiError(401, "unauthorized", "unauthorized", { headers: { "WWW-Authenticate": "Bearer" } });

export function matchRoute(routes: readonly Route[], segments: readonly string[]): { route: Route; params: Record<string, string> } | undefined {
  for (const route of routes) {
    if (route.pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < segments.length && ok; i++) {
      const p = route.pattern[i]!;
      const s = segments[i]!;
      if (p.startsWith(":")) {
        params[p.slice(1)] = s;
        ok = s !== "";
      }
      else ok = p === s;
    }
    if (ok) return { route, params };
  }
  return undefined;
}

/** Every route as "METHOD /path/{param}" (for documentation checks). */
export function routeNames(routes: readonly Route[]): string[] {
  return routes.flatMap((r) => Object.keys(r.methods).map((m) => `${m} /${r.pattern.map((p) => (p.startsWith(":") ? `{${p.slice(1)}}` : p)).join("/")}`));
}

export function dispatcher(routes: readonly Route[], auth: BearerAuth): Dispatch {
  return async (req, res, path) => {
    const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
    // Authenticate before anything else under /api/v1, so unauthenticated clients learn nothing about routes or ids.
    const rawApi = path === "/api/v1" || path.startsWith("/api/v1/");
    if (rawApi && !auth.check(req.headers.authorization)) throw unauthorized();
    const segments = parsePath(path);
    // "/api/%761/..." decodes to the API too: the check is on the decoded segments as well.
    if (!rawApi && segments[0] === "api" && segments[1] === "v1" && !auth.check(req.headers.authorization)) throw unauthorized();
    const match = matchRoute(routes, segments);
    if (!match) throw new ApiError(404, "not_found", "no such endpoint");
    const handler = match.route.methods[method];
    if (!handler) {
      const allow = Object.keys(match.route.methods);
      if (allow.includes("GET")) allow.push("HEAD");
      throw new ApiError(405, "method_not_allowed", `use ${allow.join(", ")}`, { headers: { Allow: allow.join(", ") } });
    }
    await handler({ req, res, params: match.params });
  };
}
