import { describe, expect, it } from "vitest";
import { matchRoute, routeNames, type Route } from "./router.ts";

const noop = () => {};
const routes: Route[] = [
  { pattern: ["api", "v1", "backups"], methods: { GET: noop, POST: noop } },
  { pattern: ["api", "v1", "backups", ":id"], methods: { GET: noop } },
  { pattern: ["api", "v1", "backups", ":id", "pin"], methods: { POST: noop, DELETE: noop } },
];

describe("router", () => {
  it("matches fixed segments and decodes nothing itself: parameters are taken as given", () => {
    expect(matchRoute(routes, ["api", "v1", "backups"])?.route).toBe(routes[0]);
    const m = matchRoute(routes, ["api", "v1", "backups", "20261124T031000Z-a1b2c3", "pin"]);
    expect(m?.route).toBe(routes[2]);
    expect(m?.params).toEqual({ id: "20261124T031000Z-a1b2c3" });
  });

  it("matches no route for an empty parameter, a different length or another segment", () => {
    expect(matchRoute(routes, ["api", "v1", "backups", ""])).toBeUndefined();
    expect(matchRoute(routes, ["api", "v1"])).toBeUndefined();
    expect(matchRoute(routes, ["api", "v2", "backups"])).toBeUndefined();
  });

  it("names every route with its method, parameters in braces", () => {
    expect(routeNames(routes)).toEqual(["GET /api/v1/backups", "POST /api/v1/backups", "GET /api/v1/backups/{id}", "POST /api/v1/backups/{id}/pin", "DELETE /api/v1/backups/{id}/pin"]);
  });
});
