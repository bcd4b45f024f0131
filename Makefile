# Two set-up commands, both from a fresh clone:  make demo  |  make test
# While editing: make test-fast (the tests not marked slow, a couple of minutes on 2 cores)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests need: for napari a virtual X server, Mesa's OpenGL and Qt's xcb deps;
# for the HTML report tests headless Chromium and its WebDriver.
SYSTEM_PACKAGES := xvfb xauth libgl1-mesa-dri libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
	libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
	libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libfontconfig1 libdbus-1-3 \
	chromium chromium-driver

.PHONY: demo test test-fast lint bench bench-report system-packages clean

# torch first, from the CPU wheel on this machine's disk: the project's lower bound is then
# already satisfied, so pip never reaches for a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,review]'
	touch $(STAMP)

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(BIN)/angioflow demo

test: $(STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

test-fast: $(STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

# Every benchmark (hours: the DDPM ablations train two models each), or some of them:
# make bench BENCH="vessel hvgn". Each writes docs/benchmarks/results/<name>.json, the others'
# results are kept, and docs/benchmarks.md is rebuilt from all of them (make bench-report alone
# rebuilds it). bench_vessel_heldout ranks training recipes (it needs a CONFIG): not listed.
BENCHES := vessel hvgn edsr generation curation phantom ingest review report demo load ddpm \
	edsr_selection downstream masks mask_loss photos
BENCH ?= $(BENCHES)
BENCH_ARGS_ddpm := --config configs/ddpm64_long.yaml --work runs/bench_ddpm_long
BENCH_ARGS_masks := --n 64 --figure docs/ddpm/masks256.png
BENCH_ARGS_mask_loss := --n 64 --figure docs/ddpm/mask_loss256.png
BENCH_ARGS_photos := --figure docs/generation/photos.png

bench: $(STAMP)
	@set -e; $(foreach b,$(BENCH),echo "== bench_$(b)"; \
		$(BIN)/python benchmarks/bench_$(b).py $(BENCH_ARGS_$(b));)
	$(BIN)/python benchmarks/render.py

bench-report: $(STAMP)
	$(BIN)/python benchmarks/render.py

clean:
	rm -rf $(VENV) angioflow-demo .pytest_cache
