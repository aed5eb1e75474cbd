# Shortcuts for development and operations. Settings come from $(ENV_FILE) (default
# .env, copied from one of .env.example, .env.staging.example, .env.production.example)
# when it exists, else from the environment.
#
#   make quickstart          the example on the embedded SQLite default
#   make test                the whole test suite (bash scripts/test.sh)
#   make docs                the API docs of every crate, opened in a browser
#   make up | down | logs    PostgreSQL from docker-compose.postgres.yml
#   make psql                a psql shell inside the container
#   make backup              repoctl backup --verify into $(BACKUP_DIR)/
#   make restore FROM=FILE [RESTORE_TO=URL]   into an empty database (default: the
#                            configured one)
#
# The database is DATABASE_URL, else one built from POSTGRES_HOST/PORT/USER/DB (the
# password then goes to the tools as PGPASSWORD), else smtk.sqlite3 - as the library
# resolves it. URLs are handed to repoctl through the environment, never its command
# line.

ENV_FILE ?= .env
COMPOSE ?= docker compose
COMPOSE_FILE ?= docker-compose.postgres.yml
BACKUP_DIR ?= backups
REPOCTL ?= cargo run --quiet -p repoctl --

COMPOSE_ARGS = -p smtk-repo -f $(COMPOSE_FILE) $(if $(wildcard $(ENV_FILE)),--env-file $(ENV_FILE))

# Shell prologue of the database targets: load $(ENV_FILE), resolve the URL into
# DATABASE_URL (exported for repoctl's --database-url default).
LOAD_DB = set -eu; set -a; if [ -f '$(ENV_FILE)' ]; then . '$(abspath $(ENV_FILE))'; fi; set +a; \
	url="$${DATABASE_URL:-}"; \
	if [ -z "$$url" ] && [ -n "$${POSTGRES_HOST:-}" ]; then \
	  url="postgres://$${POSTGRES_USER:-postgres}@$${POSTGRES_HOST}:$${POSTGRES_PORT:-5432}/$${POSTGRES_DB:-postgres}"; \
	  if [ -n "$${POSTGRES_PASSWORD:-}" ] && [ -z "$${PGPASSWORD:-}" ]; then export PGPASSWORD="$$POSTGRES_PASSWORD"; fi; \
	fi; \
	export DATABASE_URL="$${url:-smtk.sqlite3}";

.PHONY: help up down logs psql backup restore test quickstart docs

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

# Waits for the health check (works with Compose v2 and docker-compose v1, which has
# no `up --wait`).
up:
	$(COMPOSE) $(COMPOSE_ARGS) up -d
	@id=$$($(COMPOSE) $(COMPOSE_ARGS) ps -q postgres); tries=0; \
	until [ "$$(docker inspect --format '{{.State.Health.Status}}' "$$id")" = healthy ]; do \
	  tries=$$((tries + 1)); \
	  if [ $$tries -gt 90 ]; then echo 'postgres is not healthy after 180 s: make logs' >&2; exit 1; fi; \
	  sleep 2; \
	done; echo 'postgres is healthy'

down:
	$(COMPOSE) $(COMPOSE_ARGS) down

logs:
	$(COMPOSE) $(COMPOSE_ARGS) logs --follow --tail=200 postgres

psql:
	$(COMPOSE) $(COMPOSE_ARGS) exec postgres sh -c 'exec psql -U "$$POSTGRES_USER" -d "$$POSTGRES_DB"'

backup:
	@$(LOAD_DB) mkdir -p '$(BACKUP_DIR)'; \
	case "$$DATABASE_URL" in postgres*) ext=dump ;; *) ext=sqlite3 ;; esac; \
	$(REPOCTL) backup --out "$(BACKUP_DIR)/smtk-$$(date -u +%Y%m%dT%H%M%SZ).$$ext" --verify

restore:
	@test -n '$(FROM)' || { echo 'usage: make restore FROM=backups/FILE [RESTORE_TO=URL]' >&2; exit 2; }
	@$(LOAD_DB) if [ -n "$${RESTORE_TO:-}" ]; then export DATABASE_URL="$$RESTORE_TO"; fi; \
	$(REPOCTL) restore --from '$(FROM)'

test:
	bash scripts/test.sh

quickstart:
	cargo run --example quickstart

docs:
	cargo doc --workspace --no-deps --open
