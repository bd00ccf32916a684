# lstmshape -- the two commands of the README, plus the demo pipeline as real Make rules.
#
#   make demo    set up .venv and run the demo pipeline on sample_data/ (outputs in demo_out/)
#   make test    set up .venv with the test extras (TensorFlow included) and run ruff, mypy, pytest
#   make bench   run the benchmarks (benchmarks/), printing ratios against Keras and a memory copy;
#                end-to-end targets judged on medians (LSTMSHAPE_BENCH_SCALE=0.1 make bench: smaller)
#
# Only python3 and make are needed; everything else is installed into .venv (ignored by git).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LS     := $(BIN)/lstmshape
DEMO   := demo_out

.PHONY: demo test bench lint clean samples
.DELETE_ON_ERROR:

# -- environments --------------------------------------------------------------------------------
# Stamp files record that an install finished; they are re-made when pyproject.toml changes.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The package is installed editable, as a plain path in a .pth ("compat" mode): setuptools'
# default editable finder costs ~20 ms at every start of every lstmshape command. setuptools
# calls that mode transitional (and says so at install): when it is gone, the default one is
# used. The package is compiled too, or every run whose environment sets
# PYTHONDONTWRITEBYTECODE (CI images often do) compiles each module again (~40 ms a run).
EDITABLE = $(BIN)/pip install --quiet --config-settings editable_mode=compat -e $(1) \
	|| $(BIN)/pip install --quiet -e $(1)

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(call EDITABLE,.)
	$(BIN)/python -m compileall -q lstmshape
	touch $@

$(VENV)/.installed-table: $(VENV)/.installed-base
	$(call EDITABLE,'.[table]')
	touch $@

$(VENV)/.installed-tf: $(VENV)/.installed-base
	$(call EDITABLE,'.[tf]')
	touch $@

# torch pinned first: an open range would pull the multi-GB CUDA build; 2.13.0 satisfies the
# extra's range, so '.[test]' then installs nothing more for it.
$(VENV)/.installed-test: $(VENV)/.installed-tf
	$(BIN)/pip install --quiet torch==2.13.0
	$(call EDITABLE,'.[test]')
	touch $@

# -- the demo pipeline ---------------------------------------------------------------------------
# Each step is a rule: touch an input and only the steps downstream of it run again. lstmshape
# writes atomically, so an interrupted step never leaves a target that looks up to date.
#
#   events.csv --pad --id user --time ts --target churned--> events.npz --batch-->
#       events_batches.h5 --verify-->
#   series.npy --window--> windows.h5 --batch--> windows_batches.h5 --verify, train-->
#   sensors.npz + weather.npy --add-feature--> sensors_weather.npz --pad--> sensors_padded.npy
#       --batch--> sensors_batches.h5 --verify, train-->
#   tokens.npy (+ true lengths) --pad--> tokens_padded.npy --truncate--> tokens_short.npy
#   sensors.npz + sensors_labels.npy --partition--> train/val/test.npz --pad (val, test: --like
#       train)--> *_padded.npy --normalize (val, test: --like train)--> *_scaled.npy --classifier-->
SCALED := train val test
demo: $(DEMO)/events_batches.h5.verified $(DEMO)/windows_batches.h5.verified \
		$(DEMO)/sensors_batches.h5.verified \
		$(DEMO)/tokens_short.npy $(SCALED:%=$(DEMO)/%_scaled.npy.verified)
	$(LS) inspect $(DEMO)/tokens_short.npy --expect-shape '*,20,1'
	$(BIN)/python sample_data/train_demo.py $(DEMO)/windows_batches.h5
	$(BIN)/python sample_data/train_demo.py $(DEMO)/sensors_batches.h5
	$(BIN)/python sample_data/classify_demo.py $(SCALED:%=$(DEMO)/%_scaled.npy)

$(DEMO):
	mkdir -p $@

# A long table (events in time order, string user ids) to a labelled training tensor: one
# sequence per user, its rows sorted by ts, y = churned, ids = the users in sample order.
$(DEMO)/events.npz: sample_data/events.csv | $(VENV)/.installed-table $(DEMO)
	$(LS) inspect $< --id user --time ts --target churned
	$(LS) pad $< --id user --time ts --target churned --maxlen p95 -o $@

$(DEMO)/events_batches.h5: $(DEMO)/events.npz
	$(LS) batch $< --size 8 --shuffle --seed 1 -o $@

$(DEMO)/windows.h5: sample_data/series.npy | $(VENV)/.installed-base $(DEMO)
	$(LS) inspect $<
	$(LS) window $< --timesteps 48 --stride 4 --target 0 --horizon 1 -o $@

$(DEMO)/windows_batches.h5: $(DEMO)/windows.h5
	$(LS) batch $< --size 32 --shuffle --seed 1 -o $@

$(DEMO)/sensors_weather.npz: sample_data/sensors.npz sample_data/weather.npy \
		| $(VENV)/.installed-base $(DEMO)
	$(LS) inspect sample_data/sensors.npz
	$(LS) add-feature sample_data/sensors.npz sample_data/weather.npy --static \
		--name temp --name humidity -o $@

$(DEMO)/sensors_padded.npy: $(DEMO)/sensors_weather.npz
	$(LS) pad $< --maxlen p95 -o $@

$(DEMO)/sensors_batches.h5: $(DEMO)/sensors_padded.npy
	$(LS) batch $< --size 16 --remainder pad -o $@

$(DEMO)/tokens_padded.npy: sample_data/tokens.npy sample_data/tokens_lengths.npy \
		| $(VENV)/.installed-base $(DEMO)
	$(LS) pad sample_data/tokens.npy --lengths sample_data/tokens_lengths.npy --padding pre -o $@

$(DEMO)/tokens_short.npy: $(DEMO)/tokens_padded.npy
	$(LS) truncate $< --maxlen 20 --truncating pre -o $@

# Labels from raw data to a classifier: a stratified split, then val and test shaped exactly like
# train -- train's p95 maxlen, dtype, pad value, and train's statistics -- by --like.

$(DEMO)/train.npz $(DEMO)/val.npz $(DEMO)/test.npz &: sample_data/sensors.npz \
		sample_data/sensors_labels.npy | $(VENV)/.installed-base $(DEMO)
	$(LS) partition sample_data/sensors.npz --y sample_data/sensors_labels.npy --stratify \
		--fractions 0.7,0.15,0.15 --seed 0 -o $(DEMO)/train.npz -o $(DEMO)/val.npz -o $(DEMO)/test.npz

$(DEMO)/train_padded.npy: $(DEMO)/train.npz
	$(LS) pad $< --maxlen p95 -o $@

$(DEMO)/val_padded.npy $(DEMO)/test_padded.npy: $(DEMO)/%_padded.npy: $(DEMO)/%.npz \
		$(DEMO)/train_padded.npy
	$(LS) pad $< --like $(DEMO)/train_padded.npy.json -o $@

$(DEMO)/train_scaled.npy: $(DEMO)/train_padded.npy
	$(LS) normalize $< -o $@

$(DEMO)/val_scaled.npy $(DEMO)/test_scaled.npy: $(DEMO)/%_scaled.npy: $(DEMO)/%_padded.npy \
		$(DEMO)/train_scaled.npy
	$(LS) normalize $< --like $(DEMO)/train_scaled.npy.json -o $@

# verify writes no file: a stamp records that these very bytes passed
$(DEMO)/%.verified: $(DEMO)/% | $(VENV)/.installed-tf
	$(LS) verify $<
	touch $@

# -- checks --------------------------------------------------------------------------------------
lint: $(VENV)/.installed-test
	$(BIN)/ruff check lstmshape tests benchmarks sample_data
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run.py

samples: $(VENV)/.installed-base
	$(BIN)/python sample_data/make_samples.py

clean:
	rm -rf $(DEMO) .pytest_cache .mypy_cache .ruff_cache
