/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the exclusive lock of a read-write open, held on the
 * image's header object with OP_LOCK (lock name "exclusive", cookie = this
 * client instance's nonce).  OSDs without lock support answer
 * -EOPNOTSUPP; the open then proceeds unlocked (logged once), since the
 * lock is an ownership protocol layered over the objects and not needed
 * for the I/O itself.
 */
#include "client/libblk_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

#define LOCK_NAME "exclusive"

int image_lock_acquire(blk_image *img, int flags)
{
  char hname[64];
  image_header_name(img->id, hname, sizeof hname);
  blk_cluster *c = img->io->c;
  struct objecter_req req = { .name = hname, .op = BLK__OSD_OP_TYPE__OP_LOCK, .key = LOCK_NAME,
                              .data = c->nonce, .data_len = (uint32_t)strlen(c->nonce),
                              .length = strlen(c->nonce) };
  int r = (int)lb_obj_sync(img->io, &req, NULL, 0, NULL, NULL);
  if (r == -EOPNOTSUPP) {
    lb_clear_err();
    static bool warned;
    if (!warned) {
      warned = true;
      log_warn("libblk", "OSDs do not support object locks: image '%s' opened without its "
              "exclusive lock", img->name);
    }
    return 0;
  }
  if (r == -EBUSY)
    return lb_err(-EBUSY, "image '%s' is in use (its exclusive lock is held)%s", img->name,
                  flags & BLK_IMAGE_EXCLUSIVE ? "" : "");
  return r;
}

void image_lock_release(blk_image *img)
{
  (void)img;
}

int image_lock_check_free(blk_ioctx *io, const char *id)
{
  (void)io;
  (void)id;
  return 0;
}
