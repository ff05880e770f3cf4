# fp — developer entry points. `make help` lists them.
BUILD ?= build
JOBS ?= $(shell nproc)
PYTEST ?= python3 -m pytest
CMAKE_FLAGS ?=
FUZZ_BUILD ?= build-fuzz
ASAN_BUILD ?= build-asan
FUZZ_TIME ?= 300

.PHONY: help deps build test unit integration torch-env demo bench lint sanitize format install clean vsix vscode-e2e fuzz fuzz-short sanitize-agent soak

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install missing Debian packages (apt) and pytest
	@scripts/install-deps.sh

build: deps ## configure and build into ./build
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: build torch-env ## run every test: C unit tests, short fuzz runs, integration tests on every CPython here, then the VS Code extension's (unit, end-to-end in code-server)
	ctest --test-dir $(BUILD) --output-on-failure
	@scripts/fuzz.sh $(FUZZ_BUILD) 5
	$(PYTEST) -q tests/agent
	FP_BUILD=$(abspath $(BUILD)) $(PYTEST) -q -rs tests/integration
	@scripts/vscode-e2e.sh $(BUILD)

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

lint: ## clang-format and ruff (format, lint) over the C and the Python; installs them when missing
	@BUILD=$(BUILD) scripts/lint.sh

fuzz: ## build the libFuzzer targets (clang, ASan+UBSan) and fuzz each for FUZZ_TIME s (300)
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME)

fuzz-short: ## the fuzz targets for 5 s each (as make test runs them)
	@scripts/fuzz.sh $(FUZZ_BUILD) 5

sanitize-agent: build ## the injected agent built with ASan+UBSan, in a sanitized python (py3.8 and py3.13; FP_PYTHONS=... chooses)
	cmake -S . -B $(ASAN_BUILD) -DFP_SANITIZE=address,undefined -DFP_SANITIZE_AGENT=ON -DFP_BUILD_TESTS=OFF >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target fpagent fp_agent_py
	FP_PYTHONS=$${FP_PYTHONS:-py3.8,py3.13} FP_BUILD=$(abspath $(BUILD)) \
		FP_SANITIZED_AGENT=$(abspath $(ASAN_BUILD))/lib/fp/libfpagent.so \
		$(PYTEST) -q -rs tests/integration/test_agent_sanitized.py

soak: build ## long soaks: 200 attach cycles, 100 restarts per CPython, an hour of 10,000 events/s each
	FP_SOAK=1 FP_BUILD=$(abspath $(BUILD)) $(PYTEST) -q -s tests/integration/test_soak.py

sanitize: deps ## ASan+UBSan build (build-sanitize): C unit tests and a smoke subset of the integration tests
	@JOBS=$(JOBS) scripts/sanitize.sh

format: ## reformat the C code (clang-format) and the Python (ruff format)
	clang-format -i $$(git ls-files '*.c' '*.h')
	@BUILD=$(BUILD) scripts/lint.sh >/dev/null 2>&1 || true
	$(BUILD)/tools/ruff-0.17.5/bin/ruff format --quiet .

install: build ## install under PREFIX (default /usr/local)
	cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

# The VS Code extension (vscode-ext/): npm ci whenever package-lock.json changes.
VSCODE_EXT := vscode-ext
VSIX := $(abspath $(BUILD))/fp-vscode.vsix

$(VSCODE_EXT)/node_modules/.package-lock.json: $(VSCODE_EXT)/package-lock.json
	@command -v npm >/dev/null || { echo "npm missing: install Node.js 20 or newer"; exit 1; }
	cd $(VSCODE_EXT) && npm ci --no-audit --no-fund

vsix: build $(VSCODE_EXT)/node_modules/.package-lock.json ## VS Code extension: typecheck, lint, unit tests, build/fp-vscode.vsix
	cd $(VSCODE_EXT) && FP_BUILD=$(abspath $(BUILD)) npm test
	cd $(VSCODE_EXT) && npm run package -- --out $(VSIX)

vscode-e2e: build ## the extension in a real VS Code (code-server + headless Chromium); installs what it needs, fails when it cannot
	@FP_E2E_REQUIRED=1 scripts/vscode-e2e.sh $(BUILD)

clean: ## remove the build tree
	rm -rf $(BUILD)
