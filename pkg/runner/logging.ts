// The logger lives in pkg/common (shared with the controller); re-exported for the runner's importers.
export { createLogger, type LoggerOptions } from "../common/logging.ts";
