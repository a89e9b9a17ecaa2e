// The test environment: real servers as local processes on 127.0.0.1, each
// with a free port found at run time and its own temp dir, stopped by the suite.
export { startClickHouse, type ClickHouseServer } from "./clickhouse.ts";
export { startChdb, chdbEngineClient, insertThroughFifo, type ChdbEngine, type StartChdbOptions } from "./chdb.ts";
export { startMinio, type MinioServer } from "./minio.ts";
export { startKubeApiServer, type KubeApiServer } from "./kube.ts";
export { freePort, isPortOpen, assertPortsClosed, makeTempDir, removeDir } from "./proc.ts";
export { readVersions, toolsCache, repoRoot } from "./tools.ts";
export { startZooKeeper, zookeeperTools, type ZooKeeperServer } from "./zookeeper.ts";
export { startClickHouseCluster, type ClickHouseCluster, type ClusterHost, type StartClusterOptions } from "./cluster.ts";
