#include "core/spectrogram.h"

#include <gtest/gtest.h>
