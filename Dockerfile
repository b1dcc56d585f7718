FROM python:3.11-slim
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . \
    && python -c "from twisted.plugin import IPlugin, getPlugins; import twisted.plugins; list(getPlugins(IPlugin, twisted.plugins))"
EXPOSE 7701 7702
CMD ["twistd", "-n", "--pidfile=", "logio"]
