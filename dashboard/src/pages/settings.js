// The settings area's routes (the Security page is routed by main.js, as before).
import { navigate } from '../router.js';
import activityPage from './activity.js';
import profilePage from './profile.js';
import serviceAccountPage from './service_account.js';
import serviceAccountsPage from './service_accounts.js';
import sessionsPage from './sessions.js';

export const settingsPages = {
  '/settings': () => navigate('/settings/profile', { replace: true }),
  '/settings/profile': profilePage,
  '/settings/sessions': sessionsPage,
  '/settings/activity': activityPage,
  '/settings/service-accounts': serviceAccountsPage,
  '/settings/service-accounts/:id': serviceAccountPage,
};
