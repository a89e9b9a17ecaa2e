// backup-controller: thin entry point. Reads flags and environment, validates
// them once, loads the kubeconfig, starts; logic is in pkg/controller.
import { hostname } from "node:os";
import { KubeConfig } from "@kubernetes/client-node";
import { parseControllerCommand, CONTROLLER_USAGE, SettingsError, startControllerApp } from "../../pkg/controller/index.ts";
import { createLogger } from "../../pkg/common/logging.ts";

async function main(): Promise<number> {
  let cmd;
  try {
    cmd = parseControllerCommand(process.argv.slice(2), process.env, hostname());
  } catch (err: unknown) {
    process.stderr.write(`${err instanceof SettingsError ? err.message : String(err)}\n\n${CONTROLLER_USAGE}\n`);
    return 2;
  }
  if (cmd.help || !cmd.settings) {
    process.stdout.write(`${CONTROLLER_USAGE}\n`);
    return 0;
  }
  const logger = createLogger({ level: process.env["LOG_LEVEL"] ?? "info", defaultMeta: { component: "backup-controller" } });
  const kc = new KubeConfig();
  if (cmd.kubeconfig) kc.loadFromFile(cmd.kubeconfig);
  else kc.loadFromDefault();
  const app = await startControllerApp({ kubeConfig: kc, settings: cmd.settings, logger });
  logger.info("started", { namespace: cmd.settings.namespace, identity: cmd.settings.leaderElection.identity, probePort: app.probePort });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) process.exit(130);
    logger.info("signal received; shutting down", { signal: sig });
    app.stop().catch((err: unknown) => logger.error("shutdown failed", { error: err instanceof Error ? err.message : String(err) }));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    await app.done;
    logger.info("stopped", {});
    return 0;
  } catch (err: unknown) {
    logger.error("controller stopped", { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`backup-controller: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
