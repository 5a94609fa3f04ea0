# Included by the top-level CMakeLists.txt when PORTICO_FUZZ=ON, before any target is defined:
# everything compiled in this build tree gets libFuzzer's coverage instrumentation (fuzzer-no-link)
# and ASan+UBSan, with UBSan fatal. The fuzz targets themselves add -fsanitize=fuzzer (the libFuzzer
# main) in tests/fuzz/CMakeLists.txt. Use a build dir of its own (deploy/fuzz.sh: ./build-fuzz).
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "PORTICO_FUZZ=ON needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev); "
                      "configure a separate build dir with -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
endif()
set(PORTICO_FUZZ_SANITIZERS address,undefined)
add_compile_options(-fsanitize=fuzzer-no-link,${PORTICO_FUZZ_SANITIZERS} -fno-sanitize-recover=all
                    -fno-omit-frame-pointer -gline-tables-only
                    # bounds-checked operator[] etc. in libstdc++ (header-only, ABI-compatible)
                    -D_GLIBCXX_ASSERTIONS
                    # assert() stays on (RelWithDebInfo would define NDEBUG)
                    -UNDEBUG)
add_link_options(-fsanitize=${PORTICO_FUZZ_SANITIZERS})
