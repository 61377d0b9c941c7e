# poolgrade's image: the grader (`poolgrade`), the reference server and client (`timeserver`,
# `timeclient`) and python3 with sysv_ipc for student servers, running as a non-root user.
#
# The Rust binaries are built on the host as static-pie executables and staged into
# .build/bin/ by scripts/build-images.sh, which also builds the base image; so this file needs
# no Rust image and no registry. By hand:
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
#   mkdir -p .build/bin && cp target/x86_64-unknown-linux-gnu/release/{poolgrade,timeserver,timeclient} .build/bin/
#   docker build -t poolgrade:latest .
# BASE_IMAGE may name any Debian-like image with python3 and python3-sysv-ipc.
ARG BASE_IMAGE=poolgrade-base:bookworm

# Stage 1: take the staged binaries and prove they run on this base before shipping them.
FROM ${BASE_IMAGE} AS bins
# Marks this stage's image so that scripts/build-images.sh can prune it once it is dangling.
LABEL org.poolgrade.build-stage="bins"
COPY .build/bin/ /staging/
RUN set -e; \
    for b in poolgrade timeserver timeclient; do \
      test -f "/staging/$b" || { echo "missing .build/bin/$b: run scripts/build-images.sh" >&2; exit 1; }; \
      chmod 0755 "/staging/$b"; \
      "/staging/$b" --help >/dev/null; \
    done; \
    python3 -c 'import sysv_ipc'

# Stage 2: the image itself.
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="poolgrade" \
      org.opencontainers.image.description="Reference time server and black-box autograder for the Session 4 lab (SysV message queues, thread and process pools)" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# The base may lack useradd (mmdebstrap's essential variant has no passwd package), so the
# user is written by hand. uid 10001 must match docker-compose.yml.
RUN echo 'grader:x:10001:10001:poolgrade:/work:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'grader:x:10001:' >> /etc/group \
 && mkdir -p /work/submissions /work/results /run/poolgrade \
 && chown 10001:10001 /work /work/results /run/poolgrade
COPY --from=bins /staging/poolgrade /staging/timeserver /staging/timeclient /usr/local/bin/
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /work
CMD ["poolgrade", "--help"]
