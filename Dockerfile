# bepipe-lua on Debian 12: a build stage with the -dev packages, a runtime stage with only the
# shared libraries the binary links (tests/integration/install.py checks both lists against
# Debian 12 and the binary's NEEDED entries). See deploy/README.md.
#   docker build -t bepipe-lua .
#   docker run --rm -v "$PWD/scripts:/etc/bepipe-lua:ro" -p 127.0.0.1:9464:9464 bepipe-lua
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential make pkg-config libluajit-5.1-dev lua-cjson-dev libev-dev \
        libcurl4-openssl-dev libssl-dev libjansson-dev libmicrohttpd-dev libsimdjson-dev zlib1g-dev \
        libprotobuf-c-dev protobuf-c-compiler libisal-dev libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY runtime/ runtime/
COPY proto/ proto/
COPY scripts/ scripts/
COPY ddl/ ddl/
COPY doc/ doc/
# `make install` only builds and copies (the `all` target would try apt-get for missing packages)
RUN make -j"$(nproc)" PREFIX=/usr bepipe-lua \
 && make PREFIX=/usr DESTDIR=/out install

FROM debian:12-slim
# curl is for the HEALTHCHECK only: the binary has no probe mode of its own
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libluajit-5.1-2 libev4 libcurl4 libssl3 libjansson4 libmicrohttpd12 libsimdjson14 libprotobuf-c1 libisal2 libnghttp2-14 libstdc++6 zlib1g lua-cjson ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 bepipe \
 && useradd --system --uid 10001 --gid bepipe --home-dir /var/lib/bepipe-lua --create-home \
        --shell /usr/sbin/nologin bepipe
COPY --from=build /out/ /
# The default scripts (the shipped pipeline, its event scripts and DDL): mount your own over them.
COPY scripts/pipeline.lua /etc/bepipe-lua/pipeline.lua
COPY scripts/events/ /etc/bepipe-lua/events/
COPY ddl/ /etc/bepipe-lua/ddl/
VOLUME ["/etc/bepipe-lua"]
USER 10001:10001
ENV HOME=/var/lib/bepipe-lua
WORKDIR /var/lib/bepipe-lua
EXPOSE 9464
# SIGTERM drains (at most drain_seconds, 30 by default): stop with `docker stop -t 45`
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["/usr/bin/bepipe-lua"]
CMD ["--http", "0.0.0.0:9464", "/etc/bepipe-lua/pipeline.lua"]
