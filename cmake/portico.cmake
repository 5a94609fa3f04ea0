# Helpers so that no CMakeLists.txt repeats warnings, test discovery or timeouts.
set(PORTICO_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)

# portico_cc_library(NAME n SRCS a.cc ... DEPS x y)
function(portico_cc_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(${A_NAME} STATIC ${A_SRCS})
  target_include_directories(${A_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${A_NAME} PRIVATE ${PORTICO_WARNINGS})
  target_compile_definitions(${A_NAME} PUBLIC PORTICO_VERSION="${PORTICO_VERSION}")
  target_link_libraries(${A_NAME} PUBLIC ${A_DEPS})
endfunction()

# portico_cc_binary(NAME n SRCS a.cc ... DEPS x y)
function(portico_cc_binary)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  target_compile_options(${A_NAME} PRIVATE ${PORTICO_WARNINGS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
endfunction()

# The CTest fixture `postgres`: one PostgreSQL server (tests/postgres_fixture.sh) for every test
# that needs one; its port is in ${PORTICO_TEST_PG_STATE}/port (tests/common/postgres_test_db.h).
set(PORTICO_TEST_PG_STATE ${CMAKE_BINARY_DIR}/postgres_fixture)
# Properties (for set_tests_properties or gtest_discover_tests PROPERTIES) of a test that needs it.
set(PORTICO_POSTGRES_TEST_PROPERTIES FIXTURES_REQUIRED postgres ENVIRONMENT "PORTICO_TEST_PG_STATE=${PORTICO_TEST_PG_STATE}")

# portico_needs_postgres(test ...): those CTest tests get the fixture and its state directory.
function(portico_needs_postgres)
  set_tests_properties(${ARGN} PROPERTIES ${PORTICO_POSTGRES_TEST_PROPERTIES})
endfunction()

# portico_cc_test(NAME n SRCS a.cc ... DEPS x y [TIMEOUT s] [LABELS l] [POSTGRES]
#                 [ALSO_ON_POSTGRES prefix])
# Unit tests link gtest_main; each test case becomes one CTest test. POSTGRES: every case needs
# the `postgres` fixture. ALSO_ON_POSTGRES: every case is registered a second time, named
# <prefix><case>, with PORTICO_TEST_STORE=postgres (tests whose fixture opens the store it names)
# and the fixture.
function(portico_cc_test)
  cmake_parse_arguments(A "POSTGRES" "NAME;TIMEOUT;ALSO_ON_POSTGRES" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 60)
  endif()
  if(NOT A_LABELS)
    set(A_LABELS unit)
  endif()
  add_executable(${A_NAME} ${A_SRCS})
  target_compile_options(${A_NAME} PRIVATE ${PORTICO_WARNINGS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gmock GTest::gtest_main)
  set(pg_properties)
  if(A_POSTGRES)
    set(pg_properties ${PORTICO_POSTGRES_TEST_PROPERTIES})
  endif()
  gtest_discover_tests(${A_NAME} DISCOVERY_MODE PRE_TEST
                       PROPERTIES TIMEOUT ${A_TIMEOUT} LABELS "${A_LABELS}" ${pg_properties})
  if(A_ALSO_ON_POSTGRES)
    gtest_discover_tests(${A_NAME} DISCOVERY_MODE PRE_TEST TEST_PREFIX ${A_ALSO_ON_POSTGRES}
                         PROPERTIES TIMEOUT ${A_TIMEOUT} LABELS "${A_LABELS}"
                         ${PORTICO_POSTGRES_TEST_PROPERTIES}
                         ENVIRONMENT_MODIFICATION "PORTICO_TEST_STORE=set:postgres")
  endif()
endfunction()
