#include "core/namm_model.h"
