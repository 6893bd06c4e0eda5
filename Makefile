# Ember - build, test, install.
#   make                 libember.a, libember.so and the ember command (in build/)
#   make test            every test; ends with "N passed, M failed"
#   make test SANITIZE=1 the same under AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)
#   make run             the main job (README)
#   make bench           benchmarks (needs OpenBLAS: scripts/setup installs it)
#   make install PREFIX=/usr/local
CC ?= gcc
PREFIX ?= /usr/local
NATIVE ?= 1
SANITIZE ?= 0
OPT ?= -O3

ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT = -O1
else
BUILD ?= build
SANFLAGS =
endif

CFLAGS_ALL = -std=c11 $(OPT) -g -Wall -Wextra -Werror -Wno-unknown-pragmas -fopenmp -fPIC \
             -fno-math-errno -D_GNU_SOURCE -Iinclude $(SANFLAGS) $(CFLAGS)
ifeq ($(NATIVE),1)
CFLAGS_ALL += -march=native
endif
LDLIBS_ALL = -fopenmp -lm -ldl -lpthread $(SANFLAGS) $(LDLIBS)

SRC := $(sort $(wildcard src/*/*.c src/*/*/*.c))
OBJ := $(SRC:%.c=$(BUILD)/%.o)
HDR := include/ember.h $(wildcard src/*/*.h) src/ops/ops.def
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_LIB_SRC := $(sort $(wildcard tests/lib/*.c tests/ops/*.c))
TEST_LIB_OBJ := $(TEST_LIB_SRC:%.c=$(BUILD)/%.o)

all: $(BUILD)/libember.a $(BUILD)/libember.so $(BUILD)/ember

$(BUILD)/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libember.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libember.so: $(OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS_ALL)

TOOL_SRC := $(sort $(wildcard tools/*.c))
$(BUILD)/ember: $(TOOL_SRC) tools/cmd.h $(BUILD)/libember.a
	$(CC) $(CFLAGS_ALL) $(TOOL_SRC) $(BUILD)/libember.a -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/test_gemm: tests/test_gemm.c $(BUILD)/libember.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc $< $(BUILD)/libember.a -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/%.c $(TEST_LIB_OBJ) $(BUILD)/libember.a tests/lib/harness.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-field-initializers -DEMBER_SRC_DIR='"$(CURDIR)"' -Isrc -Itests/lib $< $(TEST_LIB_OBJ) $(BUILD)/libember.a -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/%.o: tests/%.c $(HDR) tests/lib/harness.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-field-initializers -Isrc -Itests/lib -c $< -o $@

setup:
	@sh scripts/setup

test: setup
	@$(MAKE) --no-print-directory $(TEST_BIN) all examples
	@sh scripts/run_tests.sh $(TEST_BIN)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libember.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(BUILD)/libember.a -o $@ $(LDLIBS_ALL)

# every examples/<name>.c is one program, build/examples/<name> (`make examples`; `make test` builds them)
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
examples: $(EXAMPLES)

# the main job: a small GPT trained on Debian's fortunes for a few minutes, then its validation loss
# against the corpus's unigram entropy and a sample (docs/models.md, "The main job"). Running it
# again resumes an unfinished run or samples from the finished one. DATA=file.txt trains on any
# text file instead (run directory runs/<file name>); RUN_FLAGS adds `ember train` options.
DATA ?= fortunes
RUN_FLAGS ?=
run: setup
	@$(MAKE) --no-print-directory $(BUILD)/ember
	$(BUILD)/ember train --data $(DATA) --resume $(RUN_FLAGS)

# every bench/<name>.c is one program, build/bench/<name>, linked with OpenBLAS (a peer)
$(BUILD)/bench/%: bench/%.c $(BUILD)/libember.a
	@sh scripts/setup bench
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc $< $(BUILD)/libember.a -o $@ -lopenblas $(LDLIBS_ALL)

# the benchmarks `make bench` runs, in this order (each prints its own table)
BENCHES := matmul roofline gpt2 compile decode
bench: $(BENCHES:%=$(BUILD)/bench/%)
	@for b in $(BENCHES); do echo "== bench/$$b"; $(BUILD)/bench/$$b || exit 1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/ember.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libember.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libember.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/ember $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' ember.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ember.pc

clean:
	rm -rf build build-san

.PHONY: all setup test run examples bench install clean
.SECONDARY:

# ---- fuzzing (src/io loaders, the graph parser): libFuzzer targets built with clang, ASan and UBSan ----------------
#   make fuzz                 builds fuzz/fuzz_*.c against the library sources and runs each target
#                             for FUZZ_SECONDS (default 20) over its seeds in fuzz/corpus/<target>/;
#                             new inputs go to build-fuzz/corpus/<target>/, crashes to
#                             build-fuzz/crash-<target>-*; fails when a target fails
FUZZ_SECONDS ?= 20
FUZZ_CC ?= clang
FUZZ_BUILD ?= build-fuzz
FUZZ_TARGETS := safetensors llama2c gpt2_tokenizer llama2c_tokenizer bpe graph model
FUZZ_CFLAGS = -std=c11 -g -O1 -fno-omit-frame-pointer -fopenmp -D_GNU_SOURCE -Iinclude -Isrc \
              -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJ := $(SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

# library objects: instrumented for coverage; warnings are the gcc build's job (-w)
$(FUZZ_BUILD)/src/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -w -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wall -Wextra -Werror -fsanitize=fuzzer $< $(FUZZ_OBJ) -o $@ -lm -ldl -lpthread

fuzz:
	@sh scripts/setup fuzz
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; rm -f $(FUZZ_BUILD)/crash-$$t-*; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  EMBER_NUM_THREADS=1 $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t \
	    > $(FUZZ_BUILD)/fuzz_$$t.log 2>&1; rc=$$?; \
	  grep -E '^(Done|SUMMARY)' $(FUZZ_BUILD)/fuzz_$$t.log; \
	  if [ $$rc -ne 0 ]; then tail -n 40 $(FUZZ_BUILD)/fuzz_$$t.log; \
	    echo "fuzz_$$t failed (exit $$rc); input: $$(ls $(FUZZ_BUILD)/crash-$$t-* 2>/dev/null)"; exit 1; fi; \
	done; echo "fuzz: every target ran $(FUZZ_SECONDS) s without a failure"

.PHONY: fuzz
