#!/usr/bin/env python3
"""Development aid: prints C stubs for op-table functions (src/ops/kernels.h) and public
functions (include/ember.h) that no source file defines yet, so the library links while op
groups are being written. A stub fails at run time with EM_ERR_STATE."""
import glob, re

src = "".join(open(f).read() for f in sorted(glob.glob("src/*/*.c")))
out = ['#include "kernels.h"', '#pragma GCC diagnostic ignored "-Wunused-parameter"']
for kind, name in re.findall(r"^EMO_([A-Z]+)\((\w+)\);", open("src/ops/kernels.h").read(), re.M):
    if not re.search(r"^(EMO_%s\(%s\)|em_status %s\()" % (kind, name, name), src, re.M):
        out.append('__attribute__((weak)) EMO_%s(%s) { return em_seterr(EM_ERR_STATE, "%s is not implemented yet"); }' % (kind, name, name))
hdr = open("include/ember.h").read()
hdr = re.sub(r"/\*.*?\*/", "", hdr, flags=re.S)
for m in re.finditer(r"^([a-z_][\w ]*?[\s\*]+)(em_\w+)\(([^;{]*?)\);", hdr, re.M):
    ret, name, args = m.group(1).strip(), m.group(2), m.group(3)
    if re.search(r"\b%s\([^;]*\)\s*\{" % name, src):
        continue
    body = {"void": "", "em_status": "return EM_ERR_STATE;", "bool": "return false;",
            "int": "return -1;", "double": "return 0;"}.get(ret, "return 0;")
    if "em_tensor_t *" in ret or ret.endswith("*"):
        body = "return NULL;"
    out.append('__attribute__((weak)) %s %s(%s) { em_seterr(EM_ERR_STATE, "%s is not implemented yet"); %s }' % (ret, name, args, name, body))
print("\n".join(out))
