# qcall — every target sets up what it needs on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PACKAGES := espeak-ng fonts-wqy-microhei fontconfig socat sox chromium curl xvfb xdotool systemd
DEMO_DIR := var/demo
# e.g. make demo DEMO_ARGS="--port 18080 --bus-port 17101 --printer-port 19101" (controls: +1)
DEMO_ARGS ?=

.PHONY: demo test bench lint sysdeps venv clean catalogs messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The staff pages' gettext catalogs: the .po files are in the repository, the .mo are built.
CATALOGS := $(wildcard qcall/web/locale/*/LC_MESSAGES/qcall.po)
catalogs: $(STAMP) $(CATALOGS:.po=.mo)

qcall/web/locale/%/LC_MESSAGES/qcall.mo: qcall/web/locale/%/LC_MESSAGES/qcall.po $(STAMP)
	$(VENV)/bin/pybabel compile -D qcall -d qcall/web/locale -l $*

# After changing a page's text: extract, merge into the .po files, translate, commit.
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ --no-location --sort-output --project qcall -o qcall/web/locale/qcall.pot .
	$(VENV)/bin/pybabel update -D qcall -i qcall/web/locale/qcall.pot -d qcall/web/locale --no-location

# Debian packages the tests and demo use (speech, CJK font, serial pty pairs, audio checks).
sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "please install:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	fi

demo: sysdeps $(STAMP) catalogs
	$(PY) -m qcall demo --config config/demo.toml --dir $(DEMO_DIR) $(DEMO_ARGS)

test: sysdeps $(STAMP) catalogs
	$(PY) -m pytest -q

bench: sysdeps $(STAMP) catalogs
	$(PY) bench/hub.py
	$(PY) bench/devices.py
	$(PY) bench/wal.py
	$(PY) bench/reports.py
	$(PY) bench/display.py
	$(PY) bench/kiosk.py
	$(PY) bench/web.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
