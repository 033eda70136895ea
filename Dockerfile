# syntax=docker/dockerfile:1
# The reranker server, CPU: `rerank-server start|router|models pull ...` (the operator runs it with
# command ["rerank-server"]). Build: docker build -t rerank-server .
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# onnxruntime-node's install script would download CUDA files; the CPU binaries ship in the package.
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && find node_modules/onnxruntime-node/bin -mindepth 2 -maxdepth 2 ! -name linux -exec rm -rf {} + \
 && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 ! -name x64 -exec rm -rf {} + \
 && find node_modules/tokenizers -maxdepth 1 -name 'tokenizers.*.node' ! -name 'tokenizers.linux-x64-gnu.node' -delete \
 && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY server ./server
COPY config ./config
COPY models/catalog.yaml ./models/catalog.yaml
RUN printf '#!/bin/sh\nexec node /app/server/cli/main.ts "$@"\n' > /usr/local/bin/rerank-server \
 && chmod 0755 /usr/local/bin/rerank-server \
 && mkdir -p /models /etc/rerank /app/models/local && chown 65532:65532 /models /app/models/local
# The uid the operator's pods run as (operator/plan/workloads.ts).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["rerank-server"]
# `docker run IMAGE` serves the local config and its generated stand-in model (into /app/models/local);
# give `start --config FILE` for real models. The operator passes its own arguments.
CMD ["start", "--local", "--port", "8080"]
