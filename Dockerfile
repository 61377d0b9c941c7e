# poolgrade's images, three targets of one file:
#
#   grader     (the default, built last) `poolgrade` and python3 with sysv_ipc: it runs the
#              agent, the graders and the report of docker-compose.yml, and student servers.
#              It holds no reference server: a student's `exec("timeserver")` finds nothing.
#   reference  `timeserver` and `timeclient`, the reference implementation, for the
#              container tests and for trying the handout's client against a real server.
#   prairielearn  the grader's contents plus `poolgrade-prairielearn`, PrairieLearn's external
#              grader entry point (deploy/prairielearn/): poolgrade-pl:latest.
#
# The Rust binaries are built on the host as static-pie executables and staged into
# .build/bin/ by scripts/build-images.sh, which also builds the base image; so this file needs
# no Rust image and no registry. By hand:
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
#   mkdir -p .build/bin && cp target/x86_64-unknown-linux-gnu/release/{poolgrade,timeserver,timeclient} .build/bin/
#   docker build --target reference -t poolgrade-reference:latest .
#   docker build --target prairielearn -t poolgrade-pl:latest .
#   docker build -t poolgrade:latest .
# (The legacy builder runs every stage before the target, so even the grader needs
# deploy/prairielearn/poolgrade-prairielearn in the context: .dockerignore lets it in.)
# BASE_IMAGE may name any Debian-like image with python3 and python3-sysv-ipc.
ARG BASE_IMAGE=poolgrade-base:bookworm

# The staged binaries, proven to run on this base before anything ships them.
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

# The reference implementation, run as an ordinary user.
FROM ${BASE_IMAGE} AS reference
LABEL org.opencontainers.image.title="poolgrade-reference" \
      org.opencontainers.image.description="The reference SysV time server and client of the Session 4 lab" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
RUN echo 'reference:x:10001:10001:poolgrade:/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'reference:x:10001:' >> /etc/group
COPY --from=bins /staging/timeserver /staging/timeclient /usr/local/bin/
ENV LANG=C.UTF-8
USER 10001:10001
CMD ["timeserver", "--help"]

# PrairieLearn's external grader (deploy/prairielearn/README.md): PrairieLearn mounts the job
# on /grade and runs the question's entrypoint, /usr/local/bin/poolgrade-prairielearn, as
# root with Docker's default capabilities, so poolgrade picks its unprivileged backend. No
# reference server, as in the grader.
FROM ${BASE_IMAGE} AS prairielearn
LABEL org.opencontainers.image.title="poolgrade-pl" \
      org.opencontainers.image.description="PrairieLearn external grader for the Session 4 lab (SysV message queues, thread and process pools)" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=bins /staging/poolgrade /usr/local/bin/
COPY deploy/prairielearn/poolgrade-prairielearn /usr/local/bin/
RUN chmod 0755 /usr/local/bin/poolgrade-prairielearn \
 && /usr/local/bin/poolgrade-prairielearn --help >/dev/null
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
CMD ["/usr/local/bin/poolgrade-prairielearn"]

# The grader. It runs as root on purpose, with the capabilities docker-compose.yml grants
# each service: it starts every student server under a uid leased for it alone, and keeps
# real and saved uid 0 itself so that no server can signal, trace or read it (SECURITY.md).
# /grading (mode 0700) is where the submissions, rubric and results are mounted: no
# sandbox uid can enter it.
FROM ${BASE_IMAGE} AS grader
LABEL org.opencontainers.image.title="poolgrade" \
      org.opencontainers.image.description="Black-box autograder for the Session 4 lab (SysV message queues, thread and process pools)" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
RUN mkdir -p /grading \
 && chmod 0700 /grading
COPY --from=bins /staging/poolgrade /usr/local/bin/
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /grading
CMD ["poolgrade", "--help"]
