# Warnings are part of the contract: the tree builds clean with these.
add_library(kumi_warnings INTERFACE)
# (-Wshadow=local is gcc's spelling; clang, used by the fuzz build, calls it -Wshadow-uncaptured-local.)
target_compile_options(kumi_warnings INTERFACE -Wall -Wextra
  $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> $<$<CXX_COMPILER_ID:Clang>:-Wshadow-uncaptured-local>
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Wno-missing-field-initializers>)
