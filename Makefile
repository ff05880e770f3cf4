# fp — developer entry points. `make help` lists them.
BUILD ?= build
JOBS ?= $(shell nproc)
PYTEST ?= python3 -m pytest
CMAKE_FLAGS ?=

.PHONY: help deps build test unit integration torch-env demo bench lint format install clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install missing Debian packages (apt) and pytest
	@scripts/install-deps.sh

build: deps ## configure and build into ./build
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: build torch-env ## run every test: C unit tests, then integration tests on every CPython here
	ctest --test-dir $(BUILD) --output-on-failure
	$(PYTEST) -q tests/agent
	FP_BUILD=$(abspath $(BUILD)) $(PYTEST) -q -rs tests/integration

unit: build ## C unit tests only
	ctest --test-dir $(BUILD) --output-on-failure

integration: build ## integration tests only (FP_PYTHONS=py3.12,system-3.11 narrows)
	FP_BUILD=$(abspath $(BUILD)) $(PYTEST) -q tests/integration

torch-env: ## PyTorch environments for the torch tests, made once (~/.cache/fp/torch, FP_TORCH_PYTHONS)
	@python3 tests/integration/torch_env.py

demo: build ## start the example service, attach to it, open the interactive shell
	@scripts/demo.sh $(BUILD)

bench: build ## run the benchmarks and print their figures
	@bench/run.sh $(BUILD)

lint: build ## clang-format check
	@command -v clang-format >/dev/null || { echo "clang-format missing: apt-get install clang-format"; exit 1; }
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

format: ## reformat the C code
	clang-format -i $$(git ls-files '*.c' '*.h')

install: build ## install under PREFIX (default /usr/local)
	cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

clean: ## remove the build tree
	rm -rf $(BUILD)
