// Status objects (the apiserver's error answers) become sentences, never raw bodies.
import { describe, expect, it } from "vitest";
import { ApiException } from "@kubernetes/client-node";
import { KubeApiError, causeSentence, requestRecordOf, statusSentence, toKubeApiError } from "./kube.ts";
import { replacingMessage } from "./controller.ts";

// As kube-apiserver 1.37 answers a server-side apply that changes a StatefulSet's volume claim template.
const DUMP =
  'Invalid value: [{"name":"scratch","Spec":{"AccessModes":["ReadWriteOnce"],"Selector":null,"Resources":{"Limits":null,"Requests":{"storage":"2Gi"}},"VolumeName":"","StorageClassName":null,"VolumeMode":"Filesystem"},"Status":{"Phase":"Pending"}}]: field is immutable';
const IMMUTABLE = {
  kind: "Status",
  message: `StatefulSet.apps "s" is invalid: spec.volumeClaimTemplates: ${DUMP}`,
  reason: "Invalid",
  details: { causes: [{ reason: "FieldValueInvalid", message: DUMP, field: "spec.volumeClaimTemplates" }] },
  code: 422,
};
const BAD_KEY = 'Invalid value: "bad key!": name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\'';

describe("Status sentences", () => {
  it("drop a long value dumped into a validation message, keep a short one", () => {
    expect(causeSentence(DUMP)).toBe("field is immutable");
    expect(causeSentence(BAD_KEY)).toBe(`"bad key!": name part must consist of alphanumeric characters, '-', '_' or '.'`);
    expect(causeSentence('Invalid value: "a: b": must be x')).toBe('"a: b": must be x');
    expect(causeSentence("Required value")).toBe("Required value");
  });
  it("name each refused field, and stay within 300 characters", () => {
    expect(statusSentence(IMMUTABLE)).toBe("spec.volumeClaimTemplates: field is immutable");
    expect(statusSentence({ message: "x".repeat(1000) }).length).toBe(300);
    expect(statusSentence({ message: "line one\nline two" })).toBe("line one");
    expect(statusSentence(undefined)).toBe("");
  });
  it("tell an immutable field from any other refusal", () => {
    const e = new KubeApiError("patch StatefulSet ns/s", 422, "Invalid", statusSentence(IMMUTABLE), { causes: IMMUTABLE.details.causes });
    expect(e.immutableField).toBe(true);
    expect(e.message).toBe("patch StatefulSet ns/s: HTTP 422 Invalid: spec.volumeClaimTemplates: field is immutable");
    const forbidden = [{ reason: "FieldValueForbidden", message: "Forbidden: updates to statefulset spec for fields other than 'replicas' are forbidden", field: "spec" }];
    expect(new KubeApiError("x", 422, "Invalid", "", { causes: forbidden }).immutableField).toBe(true);
    expect(new KubeApiError("x", 422, "Invalid", "", { causes: [{ reason: "FieldValueInvalid", message: BAD_KEY, field: "spec.template.spec.nodeSelector" }] }).immutableField).toBe(false);
    expect(new KubeApiError("x", 409, "Conflict", "").retryable).toBe(true);
  });
});

describe("replacingMessage", () => {
  it("says what is replaced, why, and what happens to the pod and its claims", () => {
    const m = replacingMessage(["StatefulSet"], "chbackup-system", "runner-shop-orders-12345678");
    expect(m).toContain("StatefulSet chbackup-system/runner-shop-orders-12345678 is being replaced");
    expect(m).toContain("volume claim (spec.runner.storageSize, storageClassName, or filesystem vs S3)");
    expect(m).toContain("its pod and volume claims are kept");
    expect(replacingMessage(["Service"], "n", "x")).toBe("Service n/x is being replaced: a field that cannot change in place changed, so the old object is deleted and the new one is created as soon as it is gone.");
  });
});

describe("requests as the observer sees them", () => {
  const base = "https://127.0.0.1:6443";
  it("name verb, group, resource, namespace and object name from the URL", () => {
    expect(requestRecordOf("GET", `${base}/api/v1/namespaces/ns/secrets?limit=500`)).toEqual({ verb: "list", group: "", resource: "secrets", namespace: "ns" });
    expect(requestRecordOf("GET", `${base}/api/v1/secrets?limit=500`)).toEqual({ verb: "list", group: "", resource: "secrets" });
    expect(requestRecordOf("GET", `${base}/api/v1/namespaces/team-a`)).toEqual({ verb: "get", group: "", resource: "namespaces", name: "team-a" });
    expect(requestRecordOf("PATCH", `${base}/apis/chbackup.dev/v1alpha1/namespaces/a/backupdefinitions/x/status?fieldManager=m`)).toEqual({
      verb: "patch",
      group: "chbackup.dev",
      resource: "backupdefinitions/status",
      namespace: "a",
      name: "x",
    });
    expect(requestRecordOf("POST", `${base}/apis/apps/v1/namespaces/s/statefulsets`)).toEqual({ verb: "create", group: "apps", resource: "statefulsets", namespace: "s" });
    expect(requestRecordOf("PUT", `${base}/apis/coordination.k8s.io/v1/namespaces/s/leases/l`).verb).toBe("update");
    expect(requestRecordOf("DELETE", `${base}/api/v1/namespaces/s/services/x`)).toEqual({ verb: "delete", group: "", resource: "services", namespace: "s", name: "x" });
    expect(requestRecordOf("GET", `${base}/apis/chbackup.dev/v1alpha1`)).toEqual({ verb: "discovery", group: "chbackup.dev", resource: "" });
  });
});

describe("failures of client-node calls", () => {
  it("an ApiException with a Status body becomes a typed error with a sentence", () => {
    const e = toKubeApiError("apply StatefulSet s/x", new ApiException(422, "Unsuccessful HTTP Request", IMMUTABLE, {}));
    expect(e.status).toBe(422);
    expect(e.reason).toBe("Invalid");
    expect(e.immutableField).toBe(true); // "field is immutable" in the cause
    expect(e.message).not.toContain('"Spec"');
    expect(e.retryable).toBe(false);
  });
  it("a body that is not a Status (a proxy's page) is not repeated", () => {
    const e = toKubeApiError("get Secret a/b", new ApiException(502, "Unsuccessful HTTP Request", "<html>bad gateway</html>", {}));
    expect(e.status).toBe(502);
    expect(e.message).not.toContain("html");
    expect(e.retryable).toBe(true);
  });
  it("a network failure is status 0 and retryable; an undiscovered kind is 404", () => {
    const net = toKubeApiError("list secrets", new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED 127.0.0.1:1") }));
    expect(net.status).toBe(0);
    expect(net.retryable).toBe(true);
    expect(net.message).toContain("ECONNREFUSED");
    expect(toKubeApiError("list x", new Error("Unrecognized API version and kind: chbackup.dev/v1alpha1 Restore")).status).toBe(404);
  });
});
