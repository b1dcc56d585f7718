FROM python:3.11-slim

# The dependencies first, in a layer of their own: a change to the source
# does not install them again. The metadata is installed with empty
# packages (every package setup.cfg lists), then removed. The cluster extra
# (hiredis) comes too, so the image runs --cluster.
WORKDIR /src
COPY setup.cfg setup.py README.md ./
RUN mkdir -p logio/client logio/cluster logio/ingest logio/server logio/web twisted/plugins \
    && touch logio/__init__.py logio/client/__init__.py logio/cluster/__init__.py \
        logio/ingest/__init__.py logio/server/__init__.py logio/web/__init__.py \
        twisted/plugins/logio_plugin.py \
    && pip install --no-cache-dir .[cluster] \
    && pip uninstall -y logio \
    && rm -rf logio twisted build

# The package itself (its compiled seed decoder built with a compiler that
# is removed again), and the plugin cache twistd reads (written now, as
# root: the server runs as a user that cannot write site-packages).
COPY . .
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir --no-deps . \
    && python -c "import _logio_speedups" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && python -c "from twisted.plugin import IPlugin, getPlugins; import twisted.plugins; list(getPlugins(IPlugin, twisted.plugins))" \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin logio

USER logio
WORKDIR /tmp
EXPOSE 7701 7702
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:7702/healthz', timeout=4).status != 200)"
STOPSIGNAL SIGTERM
# In a container every peer arrives from beyond its loopback, so the server
# must not be in protected mode: bind the published ports to the host's
# loopback (docker run -p 127.0.0.1:7702:7702) or give it --auth.
CMD ["twistd", "-n", "--pidfile=", "logio", "--public"]
