#include "vision/video_decoder.h"
