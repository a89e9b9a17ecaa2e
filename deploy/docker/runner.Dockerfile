# syntax=docker/dockerfile:1
# The backup-runner image. From the repository root:
#   docker build -f deploy/docker/runner.Dockerfile -t chbackup/backup-runner:0.1.0 .
# The controller runs it with the args `serve --config /etc/backup-runner/config.json`
# (RUNNER_CONTAINER in pkg/controller/contract.ts). pkg/deploy/docker.test.ts checks this file.

# Build: compile cmd/backup-runner/main.ts and what it imports (nothing of the controller) to dist/.
FROM node:24.21.0-trixie-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# npm install with the lock file, not npm ci: chdb (a test-only devDependency) lists optional
# per-platform packages that are not in the lock file, which npm ci refuses (see scripts/setup.sh).
# No install scripts and no optional packages are needed to compile.
RUN npm install --no-audit --no-fund --ignore-scripts --omit=optional
COPY tsconfig.json ./
COPY deploy/docker/tsconfig.runner.json deploy/docker/
COPY cmd/backup-runner cmd/backup-runner
COPY pkg pkg
RUN npx tsc -p deploy/docker/tsconfig.runner.json

# Production dependencies only.
FROM node:24.21.0-trixie-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

# Runtime: Node, production node_modules and the compiled runner; non-root.
FROM node:24.21.0-trixie-slim
ENV NODE_ENV=production
RUN groupadd --gid 10001 chbackup \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin chbackup \
 && mkdir -p /etc/backup-runner /var/lib/backup-runner \
 && chown 10001:10001 /var/lib/backup-runner
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER 10001:10001
EXPOSE 8080
# As bin/backup-runner: the V8 limits keep the resident memory bounded while data streams through.
ENTRYPOINT ["node", "--max-semi-space-size=4", "--max-old-space-size=128", "/app/dist/cmd/backup-runner/main.js"]
CMD ["serve", "--config", "/etc/backup-runner/config.json"]
