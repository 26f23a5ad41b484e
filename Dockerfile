# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund

# Runtime stage: production dependencies and compiled code only, non-root.
FROM node:22-bookworm-slim
ENV NODE_ENV=production GATEWAY_CONFIG=/etc/gateway/gateway.yaml
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY schema ./schema
COPY config/gateway.yaml /etc/gateway/gateway.yaml
USER node
EXPOSE 8080 9090
# exec form: the node process is PID 1's child of nothing, so SIGTERM reaches it directly.
ENTRYPOINT ["node", "bin/gateway.js"]
CMD ["start", "--config", "/etc/gateway/gateway.yaml"]
