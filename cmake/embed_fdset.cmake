# Turns a descriptor set written by protoc into a C source defining
# `const struct sigil_rpc_reflection sigil_reflection_<NAME>` (lib/include/sigil/rpc_reflection.h):
# the bytes as an array and the services to list. Run as
#   cmake -DIN=set.pb -DOUT=set.c -DNAME=workload -DSERVICES=a,b -P embed_fdset.cmake
# (no xxd or other tool needed; the build has cmake anyway).
foreach(v IN ITEMS IN OUT NAME SERVICES)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "embed_fdset.cmake: -D${v}= is missing")
  endif()
endforeach()
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" nhex)
if(nhex EQUAL 0)
  message(FATAL_ERROR "embed_fdset.cmake: ${IN} is empty")
endif()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 12 row)
string(REGEX REPLACE "(${row})" "\\1\n    " bytes "${bytes}")
string(REPLACE "," ";" services "${SERVICES}")
set(names "")
foreach(s IN LISTS services)
  string(APPEND names "\"${s}\", ")
endforeach()
file(WRITE "${OUT}.tmp"
"/* Generated from ${NAME}'s descriptor set by cmake/embed_fdset.cmake; do not edit. */
#include \"sigil/rpc_reflection.h\"
#include \"sigil_fdsets.h\"

static const uint8_t bytes[] = {
    ${bytes}
};
static const char *const services[] = {${names}NULL};
const struct sigil_rpc_reflection sigil_reflection_${NAME} = {bytes, sizeof bytes, services};
")
file(RENAME "${OUT}.tmp" "${OUT}")
