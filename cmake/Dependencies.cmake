# Finds the libraries namm links, all from Debian's archive (scripts/install-deps).
# LibTorch ships a CMake package; FFTW3 and FFmpeg only have pkg-config files.
find_package(Torch REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(FFTW3F REQUIRED IMPORTED_TARGET fftw3f)
# tokenizers/: PCRE2 runs the pre-tokenizer regexes (Unicode classes),
# utf8proc does the Unicode normalisation forms.
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
find_package(nlohmann_json 3 REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS program_options)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)

# torch's imported target brings -D_GLIBCXX_USE_CXX11_ABI and friends; wrap it
# once so every folder links the same thing.
add_library(namm_torch INTERFACE)
target_link_libraries(namm_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(namm_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
# at::parallel_for is a header template whose `#pragma omp parallel` is
# compiled into OUR objects: without OpenMP flags it silently runs on one thread.
target_link_libraries(namm_torch INTERFACE OpenMP::OpenMP_CXX)

# Optional: Open MPI (libopenmpi-dev) for evolution across processes and machines.
# AUTO uses it when found; ON requires it; OFF builds the single-process program.
set(NAMM_MPI "AUTO" CACHE STRING "Build the MPI backend of namm evolve: AUTO, ON or OFF")
set(NAMM_WITH_MPI OFF)
if(NOT NAMM_MPI STREQUAL "OFF")
  if(NAMM_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS CXX)
  else()
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND)
    set(NAMM_WITH_MPI ON)
  endif()
endif()
message(STATUS "namm: MPI backend ${NAMM_WITH_MPI}")
