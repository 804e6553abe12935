# Run by the abexp_git_revision target on every build (cmake -P): writes
# OUT, a header defining ABEXP_GIT_REVISION, the revision --version prints.
# REVISION, when not empty, is used as given (-DABEXP_GIT_REVISION=... for a
# build from a tarball); otherwise git is asked for SOURCE_DIR's HEAD, and
# outside git it is "unknown". The file is rewritten only when its text
# changes, so a build at the same revision recompiles nothing, and a build
# after a commit recompiles only the two mains that print it.
set(revision "${REVISION}")
if(revision STREQUAL "" AND NOT GIT_EXECUTABLE STREQUAL "")
  execute_process(COMMAND "${GIT_EXECUTABLE}" rev-parse --short=12 HEAD
    WORKING_DIRECTORY "${SOURCE_DIR}"
    OUTPUT_VARIABLE revision OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE rc ERROR_QUIET)
  if(NOT rc EQUAL 0)
    set(revision "")
  endif()
endif()
if(revision STREQUAL "")
  set(revision unknown)
endif()
set(text "// Written by cmake/git_revision.cmake at build time; do not edit.\n#define ABEXP_GIT_REVISION \"${revision}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
