# Warnings are part of the contract: the tree builds clean with these.
add_library(kumi_warnings INTERFACE)
target_compile_options(kumi_warnings INTERFACE -Wall -Wextra -Wshadow=local
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Wno-missing-field-initializers>)
