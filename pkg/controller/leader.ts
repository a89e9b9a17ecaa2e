// Leader election through a coordination.k8s.io Lease, as client-go does it:
// acquire when the lease is free or its holder has not renewed within the
// lease duration (as observed on our own clock, so clock skew does not
// matter), renew every retry period, and give leadership up when renewing
// has failed for the renew deadline. Optimistic concurrency (resourceVersion)
// makes sure two candidates never both win.
import type { Logger } from "winston";
import { KubeApiError, RESOURCES, type KubeClient } from "./kube.ts";
import { describeError } from "../runner/errors.ts";

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  logger: Logger;
  onStartedLeading: () => void | Promise<void>;
  onStoppedLeading: () => void | Promise<void>;
  now?: () => number;
}

interface Lease {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  readonly #now: () => number;
  #leading = false;
  /** The lease record last seen and when (our clock) it last changed. */
  #observed: { record: string; at: number } | undefined;

  constructor(opts: LeaderElectionOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  /** Runs until the signal aborts: campaigns, leads, and campaigns again after losing the lease. */
  async run(signal: AbortSignal): Promise<void> {
    const log = this.#o.logger;
    while (!signal.aborted) {
      // Campaign.
      while (!signal.aborted && !(await this.#tryAcquireOrRenew())) await sleep(this.#o.retryPeriodMs, signal);
      if (signal.aborted) break;
      this.#leading = true;
      log.info("became leader", { lease: this.#o.leaseName, identity: this.#o.identity });
      await this.#o.onStartedLeading();
      // Renew until it fails for longer than the renew deadline.
      let lastRenew = this.#now();
      while (!signal.aborted) {
        await sleep(this.#o.retryPeriodMs, signal);
        if (signal.aborted) break;
        if (await this.#tryAcquireOrRenew()) lastRenew = this.#now();
        else if (this.#now() - lastRenew > this.#o.renewDeadlineMs) break;
      }
      this.#leading = false;
      if (signal.aborted) {
        await this.#release();
        await this.#o.onStoppedLeading();
        break;
      }
      log.warn("lost leadership", { lease: this.#o.leaseName, identity: this.#o.identity });
      await this.#o.onStoppedLeading();
    }
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { client, namespace, leaseName, identity } = this.#o;
    const now = this.#now();
    const spec = (prev?: Lease["spec"]): Lease["spec"] => ({
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
      acquireTime: prev?.holderIdentity === identity && prev.acquireTime ? prev.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: (prev?.leaseTransitions ?? 0) + (prev?.holderIdentity && prev.holderIdentity !== identity ? 1 : 0),
    });
    try {
      const lease = await client.get<Lease>(RESOURCES.leases, namespace, leaseName);
      if (!lease) {
        await client.create(RESOURCES.leases, namespace, {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: leaseName, namespace },
          spec: spec(),
        });
        this.#observed = undefined;
        return true;
      }
      const record = JSON.stringify([lease.spec.holderIdentity, lease.spec.renewTime, lease.spec.leaseDurationSeconds]);
      if (!this.#observed || this.#observed.record !== record) this.#observed = { record, at: now };
      const holder = lease.spec.holderIdentity;
      const durationMs = (lease.spec.leaseDurationSeconds ?? 0) * 1000;
      if (holder && holder !== identity && this.#observed.at + durationMs > now) return false;
      const updated = await client.update<Lease>(RESOURCES.leases, namespace, leaseName, { ...lease, spec: spec(lease.spec) });
      this.#observed = { record: JSON.stringify([updated.spec.holderIdentity, updated.spec.renewTime, updated.spec.leaseDurationSeconds]), at: now };
      return true;
    } catch (err: unknown) {
      if (!(err instanceof KubeApiError && err.status === 409)) {
        this.#o.logger.warn("lease request failed", { lease: leaseName, error: describeError(err) });
      }
      return false;
    }
  }

  /** On a clean shutdown: hand the lease over at once instead of letting it expire. */
  async #release(): Promise<void> {
    const { client, namespace, leaseName, identity } = this.#o;
    try {
      const lease = await client.get<Lease>(RESOURCES.leases, namespace, leaseName);
      if (!lease || lease.spec.holderIdentity !== identity) return;
      await client.update(RESOURCES.leases, namespace, leaseName, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(this.#now()) },
      });
    } catch (err: unknown) {
      this.#o.logger.warn("releasing the lease failed", { lease: leaseName, error: describeError(err) });
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
