# SPDX-License-Identifier: Apache-2.0
# placement-sim: balance and movement simulator for common/placement.c
# (docs/placement.md).  The CTest run is a small cluster with --check, so
# it fails if the balance goal or the movement goal for adding one OSD (on
# a new host or to an existing host: <= 1.2x the minimum) is missed.
add_executable(placement-sim ${CMAKE_CURRENT_SOURCE_DIR}/placement-sim.c)
target_link_libraries(placement-sim PRIVATE blkcommon m)
add_test(NAME sim/placement
         COMMAND placement-sim --osds 300 --hosts 60 --pgs-per-osd 100
                 --size 3 --weights mixed --balance --check)
set_tests_properties(sim/placement PROPERTIES LABELS sim TIMEOUT 120)
