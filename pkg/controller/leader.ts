// Leader election through a coordination.k8s.io Lease, as client-go does it:
// acquire when the lease is free or its holder has not renewed within the
// lease duration (as observed on our own clock, so clock skew does not
// matter), renew every retry period, and give leadership up when renewing
// has failed for the renew deadline. Optimistic concurrency (resourceVersion)
// makes sure two candidates never both win. Renewing runs on its own: the
// work started on becoming leader (waiting for caches, say) never holds it up,
// and each lease request gives up after the renew deadline.
import type { Logger } from "winston";
import { KubeApiError, RESOURCES, type KubeClient } from "./kube.ts";
import { describeError } from "../common/errors.ts";

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
      // Not awaited: the lease is renewed while the leader starts (onStoppedLeading ends a start in progress).
      const started = Promise.resolve()
        .then(() => this.#o.onStartedLeading())
        .catch((err: unknown) => log.error("starting to lead failed", { lease: this.#o.leaseName, error: describeError(err) }));
      // Renew until it fails for longer than the renew deadline.
      let lastRenew = this.#now();
      while (!signal.aborted) {
        await sleep(this.#o.retryPeriodMs, signal);
        if (signal.aborted) break;
        if (await this.#tryAcquireOrRenew()) lastRenew = this.#now();
        else if (this.#now() - lastRenew > this.#o.renewDeadlineMs) break;
      }
      this.#leading = false;
      if (!signal.aborted) log.warn("lost leadership", { lease: this.#o.leaseName, identity: this.#o.identity });
      // Stop the work first, then hand the lease over: the next leader never overlaps with us.
      await this.#stopLeading();
      await started;
      if (signal.aborted) {
        await this.#release();
        break;
      }
    }
  }

  async #stopLeading(): Promise<void> {
    try {
      await this.#o.onStoppedLeading();
    } catch (err: unknown) {
      this.#o.logger.error("stopping to lead failed", { lease: this.#o.leaseName, error: describeError(err) });
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
    // A request that hangs must not outlive the renew deadline.
    const signal = AbortSignal.timeout(this.#o.renewDeadlineMs);
    try {
      const lease = await client.get<Lease>(RESOURCES.leases, namespace, leaseName, { signal });
      if (!lease) {
        await client.create(RESOURCES.leases, namespace, {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: leaseName, namespace },
          spec: spec(),
        }, { signal });
        this.#observed = undefined;
        return true;
      }
      const record = JSON.stringify([lease.spec.holderIdentity, lease.spec.renewTime, lease.spec.leaseDurationSeconds]);
      if (!this.#observed || this.#observed.record !== record) this.#observed = { record, at: now };
      const holder = lease.spec.holderIdentity;
      const durationMs = (lease.spec.leaseDurationSeconds ?? 0) * 1000;
      if (holder && holder !== identity && this.#observed.at + durationMs > now) return false;
      const updated = await client.update<Lease>(RESOURCES.leases, namespace, leaseName, { ...lease, spec: spec(lease.spec) }, { signal });
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
    const signal = AbortSignal.timeout(this.#o.renewDeadlineMs);
    try {
      const lease = await client.get<Lease>(RESOURCES.leases, namespace, leaseName, { signal });
      if (!lease || lease.spec.holderIdentity !== identity) return;
      await client.update(RESOURCES.leases, namespace, leaseName, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(this.#now()) },
      }, { signal });
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
