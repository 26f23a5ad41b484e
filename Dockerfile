# syntax=docker/dockerfile:1

# --- build: compile TypeScript with the dev dependencies -----------------
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# npm ci runs the "prepare" script, which compiles src/ to dist/.
RUN npm ci --no-audit --no-fund

# --- runtime: production dependencies and compiled code only ------------
FROM node:22-bookworm-slim
ENV NODE_ENV=production \
    GATEWAY_CONFIG=/etc/gateway/gateway.yaml \
    GATEWAY_LISTEN=0.0.0.0:8080 \
    ADMIN_LISTEN=0.0.0.0:9090
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY schema ./schema
# A working default (the quickstart); mount your own configuration over /etc/gateway.
COPY config/gateway.yaml /etc/gateway/gateway.yaml
# The image's unprivileged user (uid 1000); nothing is written at run time.
USER node
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (the gateway drains on it).
ENTRYPOINT ["node", "bin/gateway.js"]
CMD ["start", "--config", "/etc/gateway/gateway.yaml"]
