# syntax=docker/dockerfile:1
# The backup-controller image. From the repository root:
#   docker build -f deploy/docker/controller.Dockerfile -t chbackup/backup-controller:0.1.0 .
# The Deployment (deploy/base, deploy/helm/chbackup) runs it without args; settings come from
# the environment (CONTROLLER_ENV in pkg/controller/contract.ts). pkg/deploy/docker.test.ts checks this file.

# Build: compile cmd/backup-controller/main.ts and what it imports to dist/.
FROM node:24.21.0-trixie-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# npm install with the lock file, not npm ci: chdb (a test-only devDependency) lists optional
# per-platform packages that are not in the lock file, which npm ci refuses (see scripts/setup.sh).
# No install scripts and no optional packages are needed to compile.
RUN npm install --no-audit --no-fund --ignore-scripts --omit=optional
COPY tsconfig.json ./
COPY deploy/docker/tsconfig.controller.json deploy/docker/
COPY cmd/backup-controller cmd/backup-controller
COPY pkg pkg
RUN npx tsc -p deploy/docker/tsconfig.controller.json

# Production dependencies only.
FROM node:24.21.0-trixie-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

# Runtime: Node, production node_modules and the compiled controller; non-root.
FROM node:24.21.0-trixie-slim
ENV NODE_ENV=production
RUN groupadd --gid 10001 chbackup \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin chbackup
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER 10001:10001
EXPOSE 8081
# A young generation of 16 MiB: with V8's default for this heap size, the objects of requests in
# flight were promoted and the old space grew to twice the live data (bench:controller: peak RSS
# 310 MiB with the default, 210 MiB with 16).
ENTRYPOINT ["node", "--max-semi-space-size=16", "--max-old-space-size=384", "/app/dist/cmd/backup-controller/main.js"]
