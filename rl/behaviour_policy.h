#pragma once

namespace namm {}  // namespace namm
