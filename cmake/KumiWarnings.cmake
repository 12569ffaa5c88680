# Warnings are part of the contract: the tree builds clean with these.
add_library(kumi_warnings INTERFACE)
# (-Wshadow=local is gcc's spelling; clang, used by the fuzz build, calls it -Wshadow-uncaptured-local.)
target_compile_options(kumi_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX,C>:-Wall -Wextra>
  $<$<AND:$<COMPILE_LANGUAGE:CXX,C>,$<CXX_COMPILER_ID:GNU>>:-Wshadow=local>
  $<$<AND:$<COMPILE_LANGUAGE:CXX,C>,$<CXX_COMPILER_ID:Clang>>:-Wshadow-uncaptured-local>
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Wno-missing-field-initializers>
  # nvcc: its own warnings as errors-to-be, and the host compiler's through -Xcompiler.
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
