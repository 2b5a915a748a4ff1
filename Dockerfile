# baton in a container: a FROM scratch image holding the static baton binary.
#
#   make build                      # CGO_ENABLED=0 go build -o bin/baton ./cmd/baton
#   docker build -t baton .
#   docker run -d --name baton-watch --restart unless-stopped --network host \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/baton:/var/lib/baton \
#     -v /root/.docker/config.json:/root/.docker/config.json:ro \
#     baton watch --interval 5m
#
# --network host: baton probes app containers by IP, talks to its relay and
# reaches host ports. The state directory is shared with a baton on the host,
# so locks and the journal are the same for both. See docs/unattended.md.
#
# The binary must be static (CGO_ENABLED=0): there is no libc in here, and
# baton builds its relay image from this very binary.
FROM scratch
COPY bin/baton /baton
ENV HOME=/root BATON_STATE_DIR=/var/lib/baton
VOLUME ["/var/lib/baton"]
ENTRYPOINT ["/baton"]
CMD ["watch"]
