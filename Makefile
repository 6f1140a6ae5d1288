# psagate: the two commands that matter are `make run` and `make test`.
GO       ?= go
BIN      := bin/psagate
CONFIG   ?= configs/example.toml
# A count, not a duration: Go 1.26 can fail a timed run at its own deadline
# (golang/go#75804); a count has no deadline to race.
FUZZTIME ?= 10000x
PKGS     := ./...

.PHONY: run test test-dist build vet fuzz fuzz-long bench bench-memory soak check-alerts dist clean

## run: build and serve configs/example.toml (log provider, SMTP on 127.0.0.1:2525, state under ./data)
run: build
	./$(BIN) serve -config $(CONFIG)

build:
	$(GO) build -o $(BIN) ./cmd/psagate

## test: go vet, every test with the race detector, each fuzz target briefly, and the release
## build (tools/dist: the tarball for this machine is unpacked and run; the .deb is installed
## with dpkg when running as root, as CI does)
test: vet
	$(GO) test -race -count=1 $(PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)
	$(MAKE) --no-print-directory test-dist

# tools/dist is its own module (nfpm must not reach the gateway's binary).
# Its tests drive the go command, tar and dpkg from one goroutine: -race
# would only rebuild nfpm's dependencies instrumented, for nothing.
test-dist:
	$(GO) -C tools/dist test -count=1 ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) -C tools/dist vet ./...

## dist: release files in dist/: static reproducible binaries for linux/amd64 and linux/arm64,
## tarballs, .deb and .rpm (nfpm v2.48.0), SHA256SUMS. VERSION=v1.2.3 to override git's.
dist:
	$(GO) -C tools/dist run . -repo $(CURDIR) -out $(CURDIR)/dist $(if $(VERSION),-version $(VERSION))

# Every fuzz target: package and function. `make fuzz FUZZTIME=10m` for a long run.
FUZZ_TARGETS := \
	./internal/message:FuzzDecode \
	./internal/message:FuzzCleanBodyText \
	./internal/message:FuzzHTMLToText \
	./internal/rules:FuzzCompile \
	./internal/rules:FuzzEvaluate \
	./internal/config:FuzzParse \
	./internal/tomlpos:FuzzNew \
	./internal/sanitize:FuzzLine \
	./internal/smtpd:FuzzSession \
	./internal/smtpd:FuzzFoldLongLines \
	./internal/mailbox:FuzzSplitMbox \
	./internal/store:FuzzStateCheck \
	./internal/psa/autotask:FuzzClassify \
	./internal/auth:FuzzCheck

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		if grep -qs "func $$fn(" $$pkg/*_test.go; then \
			echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
			if ! out=$$($(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then \
				if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
					echo "  note: Go 1.26's fuzz coordinator reported its own deadline at the end of the run (golang/go#75804) and wrote no failing input: not a finding"; \
				else echo "$$out"; echo "FAIL: fuzz $$pkg $$fn (a failing input is saved under $$pkg/testdata/fuzz/$$fn/)"; exit 1; fi; \
			fi; \
		fi; \
	done

## bench: Go benchmarks and a short load run of the real server over loopback
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./internal/rules ./internal/message ./internal/smtpd
	$(GO) run ./cmd/psaload -duration 15s -clients 20 -size 4096

## bench-memory: 50 concurrent 20 MB messages; fails if psagate's peak RSS (VmHWM) passes 512 MiB
## (452 4.3.1 replies from the in-flight budget are expected and counted apart)
bench-memory:
	$(GO) run ./cmd/psaload -duration 10s -clients 50 -size 20000000 -max-peak-rss 512

## soak: 10 minutes at 200 messages/s with 50 clients, half noise (not part of `make test`)
soak:
	$(GO) run ./cmd/psaload -duration 10m -clients 50 -rate 200 -noise 0.5 -report 30s

## check-alerts: promtool (built once into bin/, pinned) checks and unit-tests configs/prometheus-alerts.yml
PROMTOOL_VERSION := v0.316.0
check-alerts:
	@test -x bin/promtool || { echo "building promtool $(PROMTOOL_VERSION) into bin/ (a few minutes, once)"; GOBIN=$(CURDIR)/bin $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION); }
	bin/promtool check rules configs/prometheus-alerts.yml
	bin/promtool test rules configs/prometheus-alerts.test.yml

clean:
	rm -rf bin data dist
