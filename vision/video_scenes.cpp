#include "vision/video_scenes.h"
