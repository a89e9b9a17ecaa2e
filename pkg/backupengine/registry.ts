// Engine registry: engines plug in by name without the runner knowing them.
import type { Logger } from "winston";
import type { BackupEngine } from "./types.ts";

export interface EngineDeps {
  logger: Logger;
}

export type EngineFactory = (config: unknown, deps: EngineDeps) => BackupEngine;

export class EngineRegistry {
  readonly #factories = new Map<string, EngineFactory>();

  register(name: string, factory: EngineFactory): this {
    if (this.#factories.has(name)) throw new Error(`engine "${name}" is already registered`);
    this.#factories.set(name, factory);
    return this;
  }

  names(): string[] {
    return [...this.#factories.keys()].sort();
  }

  create(name: string, config: unknown, deps: EngineDeps): BackupEngine {
    const f = this.#factories.get(name);
    if (!f) throw new Error(`unknown engine "${name}" (known: ${this.names().join(", ") || "none"})`);
    return f(config, deps);
  }
}
