#include "vision/video_encoder.h"
