#include "core/spectrogram.h"
