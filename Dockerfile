# syntax=docker/dockerfile:1

# Compiles the TypeScript and bundles the web page (web/ -> dist/web) with every dependency installed. The package files come first so that
# the `npm ci` layer is reused until package.json or package-lock.json change.
FROM node:24.20.0-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY web ./web
RUN npm run build

# Production dependencies only, so the runtime image carries no compiler or test tooling.
FROM node:24.20.0-trixie-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24.20.0-trixie-slim AS runtime
# One worker process per CPU the container may use (node:cluster); WEB_CONCURRENCY=1 for a single process.
# glibc's malloc: one arena instead of one per thread, and blocks of 64 KB or more (each socket read's buffer) given
# back to the kernel when freed instead of fragmenting the heap: 7 MB less RSS per process under writes
# (bench/results/2026-11-26-heap-growth.md).
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=5000 \
    WEB_CONCURRENCY=auto \
    GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=65536
WORKDIR /app
# package.json declares "type": "module"; migrations/ is read at run time from ../../migrations
# relative to dist/database/. The code stays owned by root, so the app cannot rewrite it; only
# data/, used by the embedded database when DATABASE_URL is unset, belongs to the node user.
COPY package.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
RUN mkdir data && chown node:node data
USER node
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["node", "dist/healthcheck.js"]
# V8 sizes the old generation from the container's memory limit (the primary shares it among the workers, see
# src/config/heap.ts) and would shrink the young generation with it (1 MB semi-spaces up to 512 MB), so that requests
# scavenge far more often; under such a limit it also lets the old generation grow by only 30 % between full
# collections, which this service's live heap outgrows with every scavenge. Both are set here, and V8's allocation-site
# pretenuring is turned off: it moved request garbage, and the list pages it held, to the old generation (Node refuses
# the last two in NODE_OPTIONS).
CMD ["node", "--max-semi-space-size=8", "--heap-growing-percent=60", "--no-allocation-site-pretenuring", "dist/server.js"]
