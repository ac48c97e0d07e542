# One image for every OneNet process; the command picks the service:
#   docker run onenet serve gateway | svc_services | svc_residents | svc_matching | svc_metrics | departments
#   docker run onenet edge           (the gateway's edge: nginx + Lua in front of the gateway, docs/adr/0012)
#   docker run onenet migrate        (one-shot job before the services start)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common ./common
COPY gateway ./gateway
COPY svc_services ./svc_services
COPY svc_residents ./svc_residents
COPY svc_matching ./svc_matching
COPY svc_metrics ./svc_metrics
COPY deploy ./deploy
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ONENET_HOST=0.0.0.0
# the gateway's edge runs on Debian's nginx with its Lua module (gateway/edge/config.py: find_runtime)
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua lua-resty-core lua-cjson lua-nginx-redis \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /install /usr/local
RUN groupadd --system --gid 10001 onenet \
 && useradd --system --uid 10001 --gid onenet --home-dir /app --create-home onenet \
 && mkdir -p /app/var && chown -R onenet:onenet /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["onenet", "healthcheck"]
ENTRYPOINT ["onenet"]
CMD ["serve", "gateway"]
