// Reads a runner's newest backup over its HTTP API (through its Service).
export type RunnerUrl = (service: { name: string; namespace: string }) => string;

/** In a cluster: the Service's DNS name and the runner's port. */
export const clusterRunnerUrl =
  (port: number, domain = "svc"): RunnerUrl =>
  (svc) =>
    `http://${svc.name}.${svc.namespace}.${domain}:${port}`;

export function runnerLastBackupFetcher(url: RunnerUrl) {
  return async (service: { name: string; namespace: string }, token: string, signal: AbortSignal): Promise<{ id: string; time: string } | undefined> => {
    const res = await fetch(`${url(service)}/api/v1/backups`, { headers: { authorization: `Bearer ${token}` }, signal });
    if (!res.ok) throw new Error(`runner ${service.namespace}/${service.name}: HTTP ${res.status}`);
    const body = (await res.json()) as { backups?: { id?: unknown; endedAt?: unknown; state?: unknown; foreign?: unknown }[] };
    // Newest first; skip backups whose manifest the runner could not read, and backups another runner wrote.
    const newest = body.backups?.find((b) => b.state !== "unreadable" && b.foreign !== true);
    if (!newest || typeof newest.id !== "string" || typeof newest.endedAt !== "string") return undefined;
    return { id: newest.id, time: newest.endedAt.replace(/\.\d+Z$/, "Z") };
  };
}
