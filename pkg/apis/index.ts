export * from "./common.ts";
export * from "./clickhouse.ts";
export * from "./encryption.ts";
export * from "./storagelocation.ts";
export * from "./backupdefinition.ts";
export * from "./runnerconfig.ts";
export * from "./resources.ts";
