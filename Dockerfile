# syntax=docker/dockerfile:1

# --- build: compile TypeScript with the dev dependencies -----------------
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# npm ci runs the "prepare" script, which compiles src/ to dist/.
RUN npm ci --no-audit --no-fund

# --- deps: production dependencies only ----------------------------------
FROM node:22-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: node, production dependencies and compiled code; no npm ----
FROM node:22-bookworm-slim
# Package managers are not needed to run, and are attack surface: removed.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
ARG GATEWAY_COMMIT=unknown
ENV NODE_ENV=production \
    GATEWAY_COMMIT=${GATEWAY_COMMIT} \
    GATEWAY_LISTEN=0.0.0.0:8080 \
    ADMIN_LISTEN=0.0.0.0:9090
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY schema ./schema
# The quickstart (built-in authorization server with a public demo secret) is
# shipped for trying the image, never started by default:
#   docker run -p 8080:8080 IMAGE start --config config/gateway.yaml
COPY config ./config
# The unprivileged user of the image (uid 1000); nothing is written at run time.
USER node
EXPOSE 8080 9090
# The admin listener wherever ADMIN_LISTEN puts it (an unspecified address is reached on loopback).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const a = (process.env.ADMIN_LISTEN || '127.0.0.1:9090').replace(/^(0\\.0\\.0\\.0|\\[::\\])(?=:)/, '127.0.0.1'); fetch('http://' + a + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (the gateway drains on it).
ENTRYPOINT ["node", "bin/gateway.js"]
# Your configuration, mounted at /etc/gateway (a ConfigMap, a volume): without it the container stops with a clear error.
CMD ["start", "--config", "/etc/gateway/gateway.yaml"]
