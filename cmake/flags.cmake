# SPDX-License-Identifier: Apache-2.0
# Warnings are errors everywhere; sanitizers and fuzzing are opt-in.
add_compile_options(-Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes
                    -Wno-unused-parameter -Werror -fno-strict-aliasing
                    -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64)
set(CMAKE_C_FLAGS_RELEASE "-O2 -g -DNDEBUG")
set(CMAKE_C_FLAGS_DEBUG "-O1 -g -fno-omit-frame-pointer")

if(BLK_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

if(BLK_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "BLK_FUZZ needs clang (CC=clang)")
  endif()
endif()
